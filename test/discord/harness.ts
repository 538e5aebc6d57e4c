/**
 * End-to-end harness: our Discord emulator in this process, the real bot (`imagine-bot start`) as a child process
 * pointed at it with the tiny test model, and small helpers to invoke commands, click buttons and read results.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readTextChunks } from '../../src/diffusion/png.js';
import { BotSupervisor, startDiscordEmulator, type DiscordEmulator, type EmulatorOptions, type InvokeRequest } from '../../src/emulator/index.js';
import type { SandboxInteraction, SandboxMessage } from '../../src/emulator/client.js';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
export const TINY_MODEL = join(REPO_ROOT, 'test', 'fixtures', 'tiny-sd');

/** Settings that keep jobs tiny and previews frequent; tests merge their own over these. */
export const TEST_CONFIG = {
  generation: { defaults: { steps: 4, size: '64x64', cfg: 7 }, limits: { sizes: ['64x64', '128x128'], maxSteps: 100, maxCount: 4 } },
  preview: { minIntervalMs: 250, size: 64 },
  // A stopped bot interrupts its running job at once (the restart tests interrupt one on purpose).
  queue: { maxPerUser: 20, maxPerGuild: 30, maxTotal: 100, shutdownGraceSeconds: 0 },
  // The configuration cannot say "no limit" (rateLimit.jobs ≥ 1), so a limit no test reaches.
  rateLimit: { jobs: 1000, minutes: 1, cooldownSeconds: 0, daily: 0 },
};

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface People {
  guildA: string;
  guildB: string;
  /** Non-NSFW channel of guild A / guild B. */
  channelA: string;
  channelB: string;
  /** The NSFW channel of guild A. */
  nsfwChannelA: string;
  admin: string;
  bruno: string;
  chloe: string;
}

export class Sandbox {
  readonly logs: LogLine[] = [];
  readonly people: People;

  private constructor(
    readonly emulator: DiscordEmulator,
    readonly bot: BotSupervisor,
    readonly dataDir: string,
  ) {
    const state = emulator.stateView() as unknown as {
      guilds: { id: string; channels: { id: string; nsfw: boolean }[] }[];
      users: { id: string; username: string }[];
    };
    const user = (name: string) => state.users.find((u) => u.username === name)!.id;
    const [a, b] = state.guilds as [(typeof state.guilds)[0], (typeof state.guilds)[0]];
    this.people = {
      guildA: a.id,
      guildB: b.id,
      channelA: a.channels.find((c) => !c.nsfw)!.id,
      channelB: b.channels.find((c) => !c.nsfw)!.id,
      nsfwChannelA: a.channels.find((c) => c.nsfw)!.id,
      admin: user('ada'),
      bruno: user('bruno'),
      chloe: user('chloe'),
    };
    bot.on('line', (line: string) => {
      if (!line.startsWith('{')) return;
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    });
  }

  static async start(
    options: { config?: object; emulator?: EmulatorOptions; dataDir?: string; env?: Record<string, string>; stopTimeoutMs?: number } = {},
  ): Promise<Sandbox> {
    const emulator = await startDiscordEmulator(options.emulator ?? {});
    const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'imagine-bot-test-'));
    const configFile = join(dataDir, 'test-config.json');
    writeFileSync(configFile, JSON.stringify(mergeDeep(TEST_CONFIG, options.config ?? {})));
    const bot = new BotSupervisor({
      command: process.execPath,
      args: ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'start'],
      cwd: REPO_ROOT,
      emulator,
      readyTimeoutMs: 60_000,
      // How long a soft stop (SIGTERM) may take before SIGKILL: longer for a bot given a shutdown grace.
      ...(options.stopTimeoutMs !== undefined ? { stopTimeoutMs: options.stopTimeoutMs } : {}),
      env: {
        ...emulator.botEnv(),
        IMAGINE_MODEL: TINY_MODEL,
        IMAGINE_PROVIDER: 'cpu',
        IMAGINE_DATA_DIR: dataDir,
        IMAGINE_CONFIG: configFile,
        // Always the SQLite file in dataDir, whatever the calling shell has set.
        KEYV_URL: undefined,
        LOG_LEVEL: 'debug',
        ...options.env,
      },
    });
    const sandbox = new Sandbox(emulator, bot, dataDir);
    await sandbox.startBot();
    return sandbox;
  }

  /** Starts (or restarts) the bot and waits until its commands are registered. */
  async startBot(): Promise<void> {
    const before = this.logs.length;
    await this.bot.start();
    await this.waitForLog((line) => line.msg === 'slash commands registered', { after: before, timeoutMs: 30_000 });
  }

  async restartBot(hard: boolean): Promise<void> {
    await this.bot.stop({ hard });
    await this.startBot();
  }

  async stop(): Promise<void> {
    await this.bot.stop({ hard: false }).catch(() => undefined);
    await this.emulator.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  waitForLog(predicate: (line: LogLine) => boolean, options: { after?: number; timeoutMs?: number } = {}): Promise<LogLine> {
    const after = options.after ?? 0;
    return waitUntil(() => this.logs.slice(after).find(predicate) ?? null, options.timeoutMs ?? 60_000, 'expected bot log line');
  }

  invoke(request: Omit<InvokeRequest, 'guild_id' | 'channel_id'> & { guild_id?: string; channel_id?: string }): string {
    return this.emulator.invokeCommand({ guild_id: this.people.guildA, channel_id: this.people.channelA, ...request }).interaction_id;
  }

  imagine(user: string, options: Record<string, unknown>, where: { guild?: string; channel?: string } = {}): string {
    return this.invoke({ user_id: user, name: 'imagine', options, guild_id: where.guild ?? this.people.guildA, channel_id: where.channel ?? this.people.channelA });
  }

  click(user: string, messageId: string, customId: string): string {
    return this.emulator.click({ user_id: user, message_id: messageId, custom_id: customId }).interaction_id;
  }

  interaction(id: string): SandboxInteraction {
    return this.emulator.interaction(id) as unknown as SandboxInteraction;
  }

  waitForInteraction(id: string, predicate: (view: SandboxInteraction) => boolean, timeoutMs = 60_000): Promise<SandboxInteraction> {
    return this.emulator.waitForInteraction(id, (view) => predicate(view as unknown as SandboxInteraction), timeoutMs) as unknown as Promise<SandboxInteraction>;
  }

  /** Waits until the interaction's reply shows a finished job (PNG attachments). */
  waitForResult(id: string, timeoutMs = 60_000): Promise<SandboxInteraction> {
    return this.waitForInteraction(id, (view) => hasPngs(view.original), timeoutMs);
  }

  /** The ephemeral text the bot answered with (reply or follow-up). */
  async ephemeralAnswer(id: string, timeoutMs = 20_000): Promise<string> {
    const view = await this.waitForInteraction(id, (v) => ephemeralText(v) !== null, timeoutMs);
    return ephemeralText(view)!;
  }

  /** Uploads a file as a member would attach it to a command; returns the id an attachment option takes. */
  async uploadAttachment(filename: string, data: Buffer, contentType?: string): Promise<string> {
    const body = { filename, content_base64: data.toString('base64'), ...(contentType ? { content_type: contentType } : {}) };
    const response = await fetch(`${this.emulator.url}/_sandbox/attachments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!response.ok) throw new Error(`POST /_sandbox/attachments: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { id: string }).id;
  }

  /** Submits the modal the bot opened in answer to interaction `id`; returns the submission's interaction id. */
  async submitModal(id: string, user: string, values: Record<string, string>): Promise<string> {
    const response = await fetch(`${this.emulator.url}/_sandbox/modals`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ interaction_id: id, user_id: user, values }),
    });
    if (!response.ok) throw new Error(`POST /_sandbox/modals: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { interaction_id: string }).interaction_id;
  }

  channelMessages(channelId: string): SandboxMessage[] {
    return this.emulator.channelMessages(channelId) as unknown as SandboxMessage[];
  }

  jobStarts(after = 0): LogLine[] {
    return this.logs.slice(after).filter((line) => line.msg === 'job started' && line['module'] === 'discord');
  }
}

/** Starts `imagine-bot worker` (tiny model, CPU, one thread) with a configuration file; resolves once it takes jobs. */
export function startWorker(configFile: string, redisUrl: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'worker', '--threads', '1'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      IMAGINE_MODEL: TINY_MODEL,
      IMAGINE_PROVIDER: 'cpu',
      IMAGINE_CONFIG: configFile,
      REDIS_URL: redisUrl,
      KEYV_URL: '',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker never started: ${output}`)), 90_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"worker started"')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code}: ${output}`));
    });
  });
}

/** Stops (SIGTERM) every worker still running and waits for each to exit. */
export async function stopWorkers(workers: readonly ChildProcess[]): Promise<void> {
  for (const worker of workers) {
    if (worker.exitCode !== null || worker.signalCode !== null) continue;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.kill('SIGTERM');
    await exited;
  }
}

export function ephemeralText(view: SandboxInteraction): string | null {
  if (view.original?.ephemeral && view.original.content) return view.original.content;
  const followup = view.followups.find((f) => f.ephemeral);
  return followup ? followup.content : null;
}

export function hasPngs(message: SandboxMessage | null | undefined): boolean {
  return !!message && message.attachments.some((a) => a.content_type === 'image/png');
}

export function customIds(message: SandboxMessage): string[] {
  const ids: string[] = [];
  for (const row of message.components as { components?: { custom_id?: string }[] }[]) for (const c of row.components ?? []) if (c.custom_id) ids.push(c.custom_id);
  return ids;
}

export function buttonId(message: SandboxMessage, action: string): string {
  const id = customIds(message).find((c) => c.startsWith(`imagine:${action}:`));
  if (!id) throw new Error(`no ${action} button on message ${message.id}: ${customIds(message).join(', ')}`);
  return id;
}

/** The job id a message's buttons carry. */
export function jobIdOf(message: SandboxMessage): string {
  return buttonId(message, 'info').split(':')[2]!;
}

export async function download(url: string): Promise<Buffer> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

export async function pngParameters(message: SandboxMessage): Promise<string[]> {
  const pngs = message.attachments.filter((a) => a.content_type === 'image/png');
  return Promise.all(pngs.map(async (a) => readTextChunks(await download(a.url))['parameters'] ?? ''));
}

export function seedOf(parameters: string): string | undefined {
  return /(?:^|, )Seed: (\d+)/m.exec(parameters)?.[1];
}

export async function waitUntil<T>(probe: () => T | null | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function mergeDeep(base: object, override: object): object {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(override)) {
    const existing = out[key];
    out[key] =
      value && typeof value === 'object' && !Array.isArray(value) && existing && typeof existing === 'object' && !Array.isArray(existing)
        ? mergeDeep(existing, value)
        : value;
  }
  return out;
}
