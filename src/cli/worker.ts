import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig } from '../config/index.js';
import { resolveModelPath } from '../hub/cache.js';
import { createLoggerFromConfig } from '../log.js';

interface WorkerOptions {
  config?: string;
  redis?: string;
  device?: number;
  threads?: number;
}

/** After SIGTERM: the running job goes back to the queue, the heartbeat says gone; then exit even if ORT lingers. */
const SHUTDOWN_DEADLINE_MS = 8_000;

function intAtLeast(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}.`);
    return n;
  };
}

/**
 * `imagine-bot worker`: one pipeline in this process, taking jobs from the Redis backend (queue.backend "redis")
 * until SIGTERM or SIGINT. Run one per GPU (`--device N`), on any machine that reaches Redis.
 */
export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('Run one image worker for the Redis queue backend: loads the model and takes jobs from Redis (one per GPU).')
    .option('--config <file>', 'configuration override file (default: config/local.json or IMAGINE_CONFIG)')
    .option('--redis <url>', 'the Redis shared with the bot (default: queue.redisUrl / REDIS_URL)')
    .option('--device <n>', 'GPU index for the CUDA provider (default 0); one worker per GPU', intAtLeast('--device', 0))
    .option('--threads <n>', 'ONNX Runtime CPU threads per session (default: all CPUs)', intAtLeast('--threads', 1))
    .action(async (options: WorkerOptions, command: Command) => {
      const configPath = options.config ?? command.parent?.opts<{ config?: string }>().config;
      const config = loadConfig(configPath ? { configPath } : {});
      const url = options.redis ?? config.queue.redisUrl;
      if (!url) throw new ConfigError(['imagine-bot worker needs a Redis: pass --redis redis://host:6379 or set REDIS_URL']);
      if (!/^rediss?:\/\//i.test(url)) throw new ConfigError([`--redis must be a redis:// or rediss:// URL`]);
      // A missing or wrong model is one line at the CLI (an ImagineError), like `generate`'s.
      const modelFolder = resolveModelPath(config.model.path, { cacheDir: config.hub.cacheDir });
      const log = createLoggerFromConfig(config);
      let stopRequested: (signal: NodeJS.Signals) => void = () => undefined;
      const stopSignal = new Promise<NodeJS.Signals>((resolve) => (stopRequested = resolve));
      process.once('SIGTERM', () => stopRequested('SIGTERM'));
      process.once('SIGINT', () => stopRequested('SIGINT'));

      const [{ engineSetupFor }, { openEngine }, { RedisWorker, timingsFromQueueConfig }] = await Promise.all([
        import('../app/runtime.js'),
        import('../app/engine.js'),
        import('../queue/index.js'),
      ]);
      // The pipeline runs on this process's own thread: a worker has no Discord to keep responsive, and if it dies
      // mid-job (native abort, OOM, SIGKILL) BullMQ's stalled-job check reruns the job on another worker.
      const engine = await openEngine(
        engineSetupFor(config, modelFolder, {
          ...(options.device !== undefined ? { deviceId: options.device } : {}),
          ...(options.threads !== undefined ? { intraOpNumThreads: options.threads } : {}),
        }),
        (line) => log.info({ module: 'engine' }, line),
        (line) => log.warn({ module: 'engine' }, line),
      );
      const worker = new RedisWorker({
        url,
        generator: engine.generator,
        identity: { model: engine.info.modelName, provider: engine.info.provider, device: options.device ?? null },
        ...timingsFromQueueConfig(config.queue),
        logger: log.child({ module: 'worker' }),
        progressIntervalMs: Math.min(1000, config.preview.minIntervalMs),
        maxBatchRows: config.worker.maxBatch,
      });
      await worker.start();
      const signal = await stopSignal;
      log.info({ signal }, 'worker shutting down');
      setTimeout(() => process.exit(0), SHUTDOWN_DEADLINE_MS).unref();
      await worker.close();
      await engine.close();
      setTimeout(() => process.exit(0), 200).unref();
    });
}
