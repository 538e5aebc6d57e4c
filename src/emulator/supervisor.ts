import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { BotController, DiscordEmulator } from './emulator.js';
import { forEachLine } from '../util/lines.js';

export interface BotProcessOptions {
  /** Executable, e.g. `process.execPath`. */
  command: string;
  args?: string[];
  /** Merged over `process.env`; `undefined` values remove a variable. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** When given, "ready" means: the child IDENTIFYed on this emulator and got READY plus its GUILD_CREATEs, on every shard. */
  emulator?: DiscordEmulator;
  /** How long `start()`/`restart()` wait for ready (default 120 s: a real model may load first). */
  readyTimeoutMs?: number;
  /** Grace between SIGTERM and SIGKILL on a soft stop (default 10 s). */
  stopTimeoutMs?: number;
  /** `capture` (default) keeps the last lines in `output`; `inherit` passes them through; or a callback per line. */
  output?: 'capture' | 'inherit' | ((line: string, stream: 'stdout' | 'stderr') => void);
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Runs the bot as a child process: start with an environment, stop softly (SIGTERM, then SIGKILL after a grace
 * period) or hard (SIGKILL), restart, and report ready when the bot has connected to the emulator's gateway.
 * Events: `exit` (ExitInfo) whenever the child ends, `line` (text, stream) for each output line.
 */
export class BotSupervisor extends EventEmitter implements BotController {
  private child: ChildProcess | null = null;
  private exitPromise: Promise<ExitInfo> | null = null;
  private readonly lines: string[] = [];
  private isReady = false;
  private startCount = 0;
  private lastExit: ExitInfo | null = null;

  constructor(private readonly options: BotProcessOptions) {
    super();
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }
  get running(): boolean {
    return this.child !== null;
  }
  get ready(): boolean {
    return this.isReady;
  }
  /** The last 500 output lines (stdout and stderr, interleaved as they arrived). */
  get output(): string[] {
    return [...this.lines];
  }

  /** Spawns the child; resolves when it is ready (or at once without an emulator). Rejects if it exits first. */
  async start(): Promise<void> {
    if (this.child) throw new Error('the bot process is already running');
    const emulator = this.options.emulator;
    const readyAfter = emulator?.botReadyCount ?? 0;
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [key, value] of Object.entries(this.options.env ?? {})) {
      if (value === undefined) delete env[key];
      else env[key] = value;
    }
    const inherit = this.options.output === 'inherit';
    const child = spawn(this.options.command, this.options.args ?? [], { cwd: this.options.cwd, env, stdio: ['ignore', inherit ? 'inherit' : 'pipe', inherit ? 'inherit' : 'pipe'] });
    this.child = child;
    this.isReady = false;
    this.startCount += 1;
    if (!inherit) {
      forEachLine(child.stdout, (line) => this.record(line, 'stdout'));
      forEachLine(child.stderr, (line) => this.record(line, 'stderr'));
    }
    this.exitPromise = new Promise<ExitInfo>((resolve) => {
      let settled = false;
      const finish = (info: ExitInfo) => {
        if (settled) return;
        settled = true;
        if (this.child === child) {
          this.child = null;
          this.isReady = false;
        }
        this.lastExit = info;
        this.emit('exit', info);
        resolve(info);
      };
      child.once('exit', (code, signal) => finish({ code, signal }));
      child.once('error', (error) => {
        this.record(`[supervisor] could not start ${this.options.command}: ${error.message}`, 'stderr');
        finish({ code: null, signal: null });
      });
    });
    if (!emulator) return;
    const abort = new AbortController();
    const exited = this.exitPromise.then((info) => {
      throw new Error(`the bot process exited before it was ready (code ${String(info.code)}, signal ${String(info.signal)})\n${this.lines.slice(-20).join('\n')}`);
    });
    try {
      await Promise.race([emulator.waitForBotReady({ afterCount: readyAfter, timeoutMs: this.options.readyTimeoutMs ?? 120_000, signal: abort.signal }), exited]);
      this.isReady = true;
    } finally {
      abort.abort();
      exited.catch(() => undefined);
    }
  }

  /** Stops the child: SIGKILL when `hard`, else SIGTERM and SIGKILL after the grace period. Resolves on exit. */
  async stop(options: { hard?: boolean } = {}): Promise<ExitInfo | null> {
    const child = this.child;
    const exit = this.exitPromise;
    if (!child || !exit) return null;
    if (options.hard) {
      child.kill('SIGKILL');
      return exit;
    }
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), this.options.stopTimeoutMs ?? 10_000);
    try {
      return await exit;
    } finally {
      clearTimeout(timer);
    }
  }

  async restart(options: { hard: boolean } = { hard: false }): Promise<void> {
    await this.stop({ hard: options.hard });
    await this.start();
  }

  waitForExit(): Promise<ExitInfo | null> {
    return this.exitPromise ?? Promise.resolve(this.lastExit);
  }

  status(): Record<string, unknown> {
    return { running: this.running, ready: this.isReady, pid: this.pid, starts: this.startCount, last_exit: this.lastExit, recent_output: this.lines.slice(-20) };
  }

  private record(line: string, stream: 'stdout' | 'stderr'): void {
    this.lines.push(line);
    if (this.lines.length > 500) this.lines.shift();
    if (typeof this.options.output === 'function') this.options.output(line, stream);
    this.emit('line', line, stream);
  }
}
