/**
 * The engine in a child process, behind the queue's ImageGenerator contract: the bot's thread only forwards
 * messages, so UNet steps, VAE decodes and safety checks never stall the Discord gateway or an interaction's 3-second
 * deadline. (onnxruntime-node's session.run blocks the thread that calls it.)
 *
 * Why a process and not a worker_thread: a native abort or a native out-of-memory inside a worker thread ends the
 * whole process, bot included, and a session.run that never returns cannot be interrupted inside a thread; a child
 * process can die alone and can be killed. docs/architecture.md ("The engine process") says more.
 *
 * - Start: fork engine-child.ts, send it the setup, wait for `ready` (model loaded and warmed up).
 * - One job at a time, or with continuous batching (`setup.maxBatch` > 1) as many as the queue hands over, which the
 *   child runs in one UNet batch; progress (with latents for previews) arrives as messages, by call id; an AbortSignal
 *   becomes `cancel` for that call.
 * - A crash (the process exits mid-job) or a hung job (no message for `stepTimeoutMs`: SIGKILL) rejects every job it
 *   ran with EngineCrashedError, and a new process is started at once, so the next job finds the model loaded again.
 * - The child's log lines arrive as pino JSON over IPC and are logged again here under module 'engine'.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { SECRET_KEYS } from '../config/index.js';
import { EngineCrashedError } from '../errors.js';
import type { Logger } from '../log.js';
import type { GeneratedImages, GenerateOptions, GenerationRequest, ImageGenerator } from '../queue/index.js';
import type { Engine, EngineInfo, EngineSetup } from './engine.js';
import { fromWireError, type ChildMessage, type EngineFault, type ParentMessage } from './engine-protocol.js';
import { forEachLine } from '../util/lines.js';

export interface EngineProcessOptions {
  setup: EngineSetup;
  /** The bot's logger; the engine's lines (its own and the child's) get module 'engine'. */
  log: Logger;
  /** A job with no progress message for this long has its process killed and fails (config engine.stepTimeoutSeconds). */
  stepTimeoutMs: number;
  /**
   * The longest a child may take from its start to `ready` (loading and warming up the model; config
   * engine.startTimeoutSeconds): a start that hangs (a stuck driver) is killed and fails instead of waiting forever.
   * Unset: no limit.
   */
  startTimeoutMs?: number;
  /** Nice value for the child (config engine.niceness), so the Discord thread wins the CPU; 0 leaves it alone. */
  niceness?: number;
  /** Tests only: lets `injectFault` make the child abort or hang. */
  debugFaults?: boolean;
}

/** How long a stop request may take before the child is killed. */
const STOP_GRACE_MS = 5_000;
/** The longest wait before restarting an engine that keeps crashing. */
const MAX_RESTART_DELAY_MS = 30_000;
const STDERR_TAIL_LINES = 20;

const fromSources = import.meta.url.endsWith('.ts');
const CHILD_ENTRY = fileURLToPath(new URL(fromSources ? './engine-child.ts' : './engine-child.js', import.meta.url));
/** From the sources the child needs tsx too, resolved from this checkout (the working folder may be anywhere). */
const CHILD_EXEC_ARGV = fromSources ? ['--import', import.meta.resolve('tsx')] : [];

interface Call {
  callId: number;
  jobId: string | undefined;
  onProgress: GenerateOptions['onProgress'];
  resolve(images: GeneratedImages): void;
  reject(error: unknown): void;
}

interface LiveChild {
  proc: ChildProcess;
  /** The jobs it runs now, by call id: one, or several with continuous batching. */
  calls: Map<number, Call>;
  watchdog: NodeJS.Timeout | undefined;
  stderrTail: string[];
  /** Set when this side killed the child, saying why (hung job). */
  killedBecause: string | null;
  /** A stop was asked for: its exit is not a crash. */
  stopping: boolean;
  ready: boolean;
  /** The process has exited. */
  dead: boolean;
  exited: Promise<void>;
}

export class EngineProcess implements Engine, ImageGenerator {
  private readonly log: Logger;
  private live: LiveChild | null = null;
  /** The child that takes the next job, once ready; null when none is starting or running. */
  private next: Promise<LiveChild> | null = null;
  private engineInfo: EngineInfo | null = null;
  private closed = false;
  private callIds = 0;
  private jobTail: Promise<void> = Promise.resolve();
  private consecutiveCrashes = 0;

  private constructor(private readonly options: EngineProcessOptions) {
    this.log = options.log.child({ module: 'engine' });
  }

  /** Starts the child and resolves once it has loaded the model and warmed up; rejects with its start error. */
  static async start(options: EngineProcessOptions): Promise<EngineProcess> {
    const engine = new EngineProcess(options);
    await engine.readyChild();
    return engine;
  }

  get info(): EngineInfo {
    if (!this.engineInfo) throw new Error('the engine process has not started');
    return this.engineInfo;
  }

  get generator(): ImageGenerator {
    return this;
  }

  /** The current child's pid (tests; operators find it in the 'engine process started' line). */
  get pid(): number | undefined {
    return this.live?.proc.pid;
  }

  /** Tests only (needs `debugFaults`): the child aborts or hangs at its next step. */
  injectFault(fault: EngineFault): void {
    if (this.live) this.post(this.live, { type: 'fault', fault });
  }

  async generate(request: GenerationRequest, options: GenerateOptions): Promise<GeneratedImages> {
    // With continuous batching the child takes overlapping jobs (the queue limits them by rows).
    if ((this.options.setup.maxBatch ?? 1) > 1) return this.run(request, options);
    // One job at a time (the queue's single worker already guarantees it; this keeps the child's contract anyway).
    const previous = this.jobTail;
    let finished!: () => void;
    this.jobTail = new Promise((resolve) => (finished = resolve));
    try {
      await previous;
      return await this.run(request, options);
    } finally {
      finished();
    }
  }

  /** Asks the child to release the model and exit; kills it after a grace period. */
  async close(): Promise<void> {
    this.closed = true;
    const live = this.live;
    if (!live) return;
    live.stopping = true;
    this.post(live, { type: 'stop' });
    const kill = setTimeout(() => live.proc.kill('SIGKILL'), STOP_GRACE_MS);
    await live.exited;
    clearTimeout(kill);
  }

  private async run(request: GenerationRequest, options: GenerateOptions): Promise<GeneratedImages> {
    if (this.closed) throw new Error('the engine process is closed');
    // A job cancelled while the engine restarts ends at once, not when the model is loaded again.
    let live = await untilAborted(this.readyChild(), options.signal);
    // Died between jobs: its exit handler has already started the next one.
    while (live.dead) {
      if (this.closed) throw new Error('the engine process is closed');
      live = await untilAborted(this.readyChild(), options.signal);
    }
    options.signal.throwIfAborted();
    const ready = live;
    const callId = ++this.callIds;
    return new Promise<GeneratedImages>((resolve, reject) => {
      const onAbort = () => this.post(ready, { type: 'cancel', callId });
      const settle = () => {
        options.signal.removeEventListener('abort', onAbort);
        ready.calls.delete(callId);
        if (ready.calls.size === 0) clearTimeout(ready.watchdog);
      };
      ready.calls.set(callId, {
        callId,
        jobId: options.jobId,
        onProgress: options.onProgress,
        resolve: (images) => {
          settle();
          resolve(images);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      options.signal.addEventListener('abort', onAbort, { once: true });
      this.armWatchdog(ready);
      this.post(ready, { type: 'generate', callId, ...(options.jobId ? { jobId: options.jobId } : {}), request: { ...request, seed: request.seed.toString() } });
    });
  }

  /** The ready child, starting one when there is none. */
  private readyChild(): Promise<LiveChild> {
    if (!this.next) {
      const next = this.spawn();
      this.next = next;
      // A failed start fails the job that waited for it; the next job tries again.
      next.catch(() => {
        if (this.next === next) this.next = null;
      });
    }
    return this.next;
  }

  private spawn(): Promise<LiveChild> {
    const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: this.options.log.level };
    // The engine needs no secret: the token never enters its process (nor a core dump of it).
    for (const { env: name } of SECRET_KEYS) delete env[name];
    delete env['IMAGINE_ENGINE_DEBUG_FAULTS'];
    if (this.options.debugFaults) env['IMAGINE_ENGINE_DEBUG_FAULTS'] = '1';
    const proc = fork(CHILD_ENTRY, [], { execArgv: CHILD_EXEC_ARGV, env, serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let exitedResolve!: () => void;
    const live: LiveChild = {
      proc,
      calls: new Map(),
      watchdog: undefined,
      stderrTail: [],
      killedBecause: null,
      stopping: false,
      ready: false,
      dead: false,
      exited: new Promise((resolve) => (exitedResolve = resolve)),
    };
    this.live = live;
    this.log.info({ pid: proc.pid }, 'engine process started');
    if (this.options.niceness && proc.pid !== undefined) {
      try {
        setPriority(proc.pid, this.options.niceness);
      } catch (error) {
        this.log.warn({ err: error }, 'could not lower the engine process priority');
      }
    }
    forEachOutputLine(proc.stdout, (line) => this.log.info({ stream: 'stdout' }, line));
    forEachOutputLine(proc.stderr, (line) => {
      live.stderrTail.push(line);
      if (live.stderrTail.length > STDERR_TAIL_LINES) live.stderrTail.shift();
      this.log.warn({ stream: 'stderr' }, line);
    });
    const startTimeoutMs = this.options.startTimeoutMs;
    const startTimer =
      startTimeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            live.killedBecause = `it did not finish loading the model within ${startTimeoutMs / 1000} s`;
            this.log.error({ pid: proc.pid, startTimeoutSeconds: startTimeoutMs / 1000 }, 'engine process did not start in time; killing it');
            proc.kill('SIGKILL');
          }, startTimeoutMs);
    return new Promise<LiveChild>((resolve, reject) => {
      proc.on('message', (message: ChildMessage) => {
        switch (message.type) {
          case 'log':
            this.relog(message.line);
            return;
          case 'ready':
            clearTimeout(startTimer);
            live.ready = true;
            this.engineInfo = message.info;
            resolve(live);
            return;
          case 'startFailed':
            reject(fromWireError(message.error));
            return;
          default:
            this.onJobMessage(live, message);
        }
      });
      proc.once('error', (error) => {
        // Could not spawn (or could not signal): the exit handler follows when there was a process.
        if (proc.pid === undefined) {
          exitedResolve();
          reject(error);
        }
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(startTimer);
        exitedResolve();
        const wasReady = live.ready;
        this.onExit(live, code, signal);
        if (!wasReady) reject(new Error(`the engine process ended while loading the model (${live.killedBecause ?? describeExit(code, signal, live.stderrTail)})${tailNote(live.stderrTail)}`));
      });
      this.post(live, { type: 'start', setup: this.options.setup });
    });
  }

  private onJobMessage(live: LiveChild, message: Exclude<ChildMessage, { type: 'log' | 'ready' | 'startFailed' }>): void {
    const call = live.calls.get(message.callId);
    if (!call) return;
    switch (message.type) {
      case 'progress':
        this.armWatchdog(live);
        try {
          // The latents arrived in the received message (a view into it): handed on without a copy of ours.
          call.onProgress?.({
            step: message.step,
            totalSteps: message.totalSteps,
            ...(message.latents ? { latents: message.latents } : {}),
            ...(message.loadingLoras ? { loadingLoras: message.loadingLoras } : {}),
          });
        } catch (error) {
          this.log.warn({ jobId: call.jobId, err: error }, 'a progress listener failed');
        }
        return;
      case 'done':
        this.consecutiveCrashes = 0;
        call.resolve({
          images: message.images.map((image) => ({ png: image.png, seed: BigInt(image.seed), ...(image.nsfw === undefined ? {} : { nsfw: image.nsfw }) })),
          ...(message.model !== undefined ? { model: message.model } : {}),
          ...(message.promptTokens !== undefined ? { promptTokens: message.promptTokens } : {}),
        });
        return;
      case 'failed':
        call.reject(fromWireError(message.error));
        return;
    }
  }

  private onExit(live: LiveChild, code: number | null, signal: NodeJS.Signals | null): void {
    live.dead = true;
    clearTimeout(live.watchdog);
    const expected = live.stopping && live.killedBecause === null;
    const reason = live.killedBecause ?? describeExit(code, signal, live.stderrTail);
    const calls = [...live.calls.values()];
    for (const call of calls) call.reject(new EngineCrashedError(reason));
    if (this.live === live) this.live = null;
    if (expected) {
      this.log.info({ pid: live.proc.pid, code, signal }, 'engine process stopped');
      return;
    }
    if (!live.ready) return; // a failed start: its error goes to whoever waited for it
    this.consecutiveCrashes += 1;
    this.log.error({ pid: live.proc.pid, code, signal, reason, ...jobIdsOf(calls), stderr: live.stderrTail.slice(-5) }, 'engine process crashed');
    if (this.closed) return;
    // Start the next one now, so the next job finds the model loaded; wait longer each time it keeps crashing.
    const delayMs = this.consecutiveCrashes > 1 ? Math.min(MAX_RESTART_DELAY_MS, 1000 * 2 ** (this.consecutiveCrashes - 2)) : 0;
    this.log.info({ delayMs }, 'restarting the engine process');
    const next = new Promise<void>((resolve) => setTimeout(resolve, delayMs)).then(() => {
      if (this.closed) throw new Error('the engine process is closed');
      return this.spawn();
    });
    this.next = next;
    next.then(
      () => this.log.info('engine process restarted'),
      (error: unknown) => {
        if (this.next === next) this.next = null;
        if (!this.closed) this.log.error({ err: error }, 'the engine process could not be restarted; the next job tries again');
      },
    );
  }

  /** (Re)starts the hung-job timer: no message from the child for stepTimeoutMs → SIGKILL. */
  private armWatchdog(live: LiveChild): void {
    clearTimeout(live.watchdog);
    live.watchdog = setTimeout(() => {
      const seconds = this.options.stepTimeoutMs / 1000;
      live.killedBecause = `it stopped responding: no progress for ${seconds} s`;
      this.log.error({ pid: live.proc.pid, ...jobIdsOf([...live.calls.values()]), stepTimeoutSeconds: seconds }, 'engine process hung; killing it');
      live.proc.kill('SIGKILL');
    }, this.options.stepTimeoutMs);
  }

  private post(live: LiveChild, message: ParentMessage): void {
    // A send on a dying child fails; its exit handler settles whatever was running.
    if (live.proc.connected) live.proc.send(message, (error) => error && this.log.debug({ err: error }, 'message to the engine process not delivered'));
  }

  /** One of the child's pino lines, logged again by the bot's logger (scrubbed, at its level, with module 'engine'). */
  private relog(line: string): void {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.log.info(line);
      return;
    }
    const { level, time: _time, msg, ...fields } = parsed;
    const label = (typeof level === 'number' ? pino.levels.labels[level] : undefined) ?? 'info';
    const method = (label in pino.levels.values ? label : 'info') as pino.Level;
    this.log[method](fields, typeof msg === 'string' ? msg : '');
  }
}

/** The job ids of the calls for a log line: `jobId` for one, `jobIds` for several, nothing for none. */
function jobIdsOf(calls: readonly Call[]): { jobId?: string; jobIds?: string[] } {
  const ids = calls.flatMap((call) => (call.jobId === undefined ? [] : [call.jobId]));
  if (ids.length === 0) return {};
  return ids.length === 1 ? { jobId: ids[0]! } : { jobIds: ids };
}

/** What ended a child, in words for the user-facing message. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null, stderrTail: readonly string[]): string {
  const output = stderrTail.join('\n');
  if (/heap out of memory|out of memory|bad_alloc|Failed to allocate/i.test(output)) return 'out of memory';
  if (signal === 'SIGKILL') return 'killed by SIGKILL, as the system does when memory runs out';
  if (signal === 'SIGABRT') return 'native abort, SIGABRT';
  if (signal) return `stopped by ${signal}`;
  return `exited with code ${String(code)}`;
}

/** `promise`, or the signal's reason as soon as it is aborted. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** The child's output lines without trailing white space; blank ones are not worth a log line. */
function forEachOutputLine(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  forEachLine(stream, (raw) => {
    const line = raw.trimEnd();
    if (line) onLine(line);
  });
}

function tailNote(stderrTail: readonly string[]): string {
  return stderrTail.length > 0 ? `: ${stderrTail.slice(-3).join(' | ')}` : '';
}

