import type { BotSupervisor, DiscordEmulator } from '../emulator/index.js';
import { DEFAULT_KEY_PREFIX, fetchFleet } from '../queue/index.js';

/**
 * The `imagine-bot worker` processes of `imagine-bot sandbox --workers N`: started with the bot's environment,
 * supervised (one that dies, by itself or by `POST /_sandbox/workers/:index/kill`, is started again after
 * `respawnDelayMs`), and listed with what their heartbeats in Redis say (busy, jobs done).
 */

/** One entry of `GET /_sandbox/workers`. */
export interface SandboxWorkerView {
  index: number;
  /** The current process's pid; null between a death and its respawn. */
  pid: number | null;
  /** The process is running (a SIGKILLed one is not, until it is respawned). */
  alive: boolean;
  /** Its heartbeat says it is running a job. */
  busy: boolean;
  /** Jobs this process finished (from its heartbeat; a respawned process starts again at 0). */
  jobs_done: number;
}

export interface SandboxWorkersOptions {
  count: number;
  /** The worker command line (`imagine-bot worker …`). */
  command: { command: string; args: string[] };
  env: Record<string, string | undefined>;
  redisUrl: string;
  /** Where each worker's output lines go. */
  output: (index: number, line: string) => void;
  /** Delay before a dead worker is started again (the 2 s). */
  respawnDelayMs?: number;
  /** How long a worker may take to load the model and say "worker started". */
  readyTimeoutMs?: number;
}

/** How long a heartbeat may be silent before the worker is shown idle rather than busy: the worker's default. */
const HEARTBEAT_GONE_AFTER_MS = 15_000;

export class SandboxWorkers {
  private readonly slots: BotSupervisor[] = [];
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  private stopping = false;

  private constructor(private readonly options: SandboxWorkersOptions) {}

  /** Starts the workers and resolves once every one takes jobs. */
  static async start(options: SandboxWorkersOptions): Promise<SandboxWorkers> {
    // Imported here like the emulator in sandbox.ts: only `sandbox` pays for it.
    const { BotSupervisor } = await import('../emulator/index.js');
    const workers = new SandboxWorkers(options);
    for (let index = 0; index < options.count; index += 1) {
      const slot = new BotSupervisor({ ...options.command, env: options.env, output: (line) => options.output(index, line) });
      slot.on('exit', () => workers.respawnLater(index));
      workers.slots.push(slot);
    }
    try {
      await Promise.all(workers.slots.map((_, index) => workers.startSlot(index)));
    } catch (error) {
      await workers.stop();
      throw error;
    }
    return workers;
  }

  get count(): number {
    return this.slots.length;
  }

  /** Every worker, in index order, with its heartbeat's busy flag and jobs done matched by pid. */
  async list(): Promise<SandboxWorkerView[]> {
    const fleet = await fetchFleet(this.options.redisUrl, { prefix: DEFAULT_KEY_PREFIX, goneAfterMs: HEARTBEAT_GONE_AFTER_MS }).catch(() => []);
    return this.slots.map((slot, index) => {
      const pid = slot.pid;
      // Newest heartbeat first (readWorkers sorts so): a pid reused by the system matches the latest record.
      const beat = pid === null ? undefined : fleet.find((entry) => entry.pid === pid);
      return { index, pid, alive: slot.running, busy: beat?.state === 'busy', jobs_done: beat?.jobsDone ?? 0 };
    });
  }

  /** SIGKILLs worker `index` (it is respawned after the delay); resolves with the killed pid once it is gone. */
  async kill(index: number): Promise<{ index: number; killed_pid: number | null }> {
    const slot = this.slots[index];
    if (!slot) throw new RangeError(`no worker ${index} (there are ${this.slots.length})`);
    const pid = slot.pid;
    await slot.stop({ hard: true });
    return { index, killed_pid: pid };
  }

  /** Stops every worker (SIGTERM: a running job goes back to the queue) and cancels pending respawns. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
    await Promise.allSettled(this.slots.map((slot) => slot.stop()));
  }

  /** The control API routes, on the emulator the sandbox serves. */
  serveOn(emulator: DiscordEmulator): void {
    emulator.addControlRoute('GET /workers', async () => ({ status: 200, body: await this.list() }));
    emulator.addControlRoute('POST /workers/:id/kill', async ({ ids }) => {
      const index = ids[0] ?? -1;
      if (!this.slots[index]) return { status: 404, body: { error: `no worker ${index} (indexes 0 to ${this.slots.length - 1})` } };
      return { status: 200, body: { ...(await this.kill(index)), respawn_after_ms: this.respawnDelayMs } };
    });
  }

  private get respawnDelayMs(): number {
    return this.options.respawnDelayMs ?? 2_000;
  }

  /** Starts slot `index` and resolves once its log says "worker started"; rejects if it exits or times out first. */
  private async startSlot(index: number): Promise<void> {
    const slot = this.slots[index]!;
    const timeoutMs = this.options.readyTimeoutMs ?? 180_000;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`worker ${index} did not start within ${timeoutMs / 1000} s:\n${slot.output.slice(-20).join('\n')}`)), timeoutMs);
      const onLine = (line: string) => {
        if (line.includes('"worker started"')) finish();
      };
      const onExit = () => finish(new Error(`worker ${index} exited before it took jobs:\n${slot.output.slice(-20).join('\n')}`));
      const finish = (error?: Error) => {
        clearTimeout(timer);
        slot.off('line', onLine);
        slot.off('exit', onExit);
        if (error) reject(error);
        else resolve();
      };
      slot.on('line', onLine);
      slot.on('exit', onExit);
    });
    await slot.start();
    await ready;
  }

  private respawnLater(index: number): void {
    if (this.stopping) return;
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (this.stopping) return;
      this.options.output(index, `[sandbox] worker ${index} died: starting it again`);
      // A worker that cannot start again is reported on its own output; its exit schedules the next try.
      this.startSlot(index).catch((error: unknown) => this.options.output(index, `[sandbox] ${(error as Error).message.split('\n')[0] ?? ''}`));
    }, this.respawnDelayMs);
    this.respawnTimers.add(timer);
  }
}
