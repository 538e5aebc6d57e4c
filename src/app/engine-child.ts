/**
 * The engine's process: started by EngineProcess (engine-process.ts) with an IPC channel, it loads and warms up the
 * pipeline (openEngine, as the inline engine does), answers `ready`, then runs jobs (one at a time, or overlapping
 * ones in one UNet batch with continuous batching) and streams each step's progress back, by call id. Its log lines go to the bot over IPC, so they land in the bot's log under module 'engine'.
 *
 * Nothing here talks to Discord, and the bot's secrets are not in this process's environment.
 */
import { createLogger, type Logger } from '../log.js';
import { CancelledError } from '../errors.js';
import { openEngine, type Engine } from './engine.js';
import { toWireError, type ChildMessage, type EngineFault, type ParentMessage } from './engine-protocol.js';

if (!process.send) {
  process.stderr.write('engine-child: start me through EngineProcess (I need an IPC channel)\n');
  process.exit(2);
}

/** Resolves once the last message sent so far is written (messages go out in order): wait for it before exiting. */
let lastSent: Promise<void> = Promise.resolve();

function send(message: ChildMessage): Promise<void> {
  // The channel is gone when the bot died; this process then exits on 'disconnect'.
  if (!process.connected) return lastSent;
  lastSent = new Promise((resolve) => process.send!(message, undefined, {}, () => resolve()));
  return lastSent;
}

const log: Logger = createLogger({ pretty: false, destination: { write: (line: string) => void send({ type: 'log', line: line.trimEnd() }) } });
const debugFaults = process.env['IMAGINE_ENGINE_DEBUG_FAULTS'] === '1';

let engine: Engine | null = null;
/** The jobs running now: their abort controllers, by the parent's call id. */
const running = new Map<number, AbortController>();
let pendingFault: EngineFault | null = null;
/** Where the pipeline's own lines go: the running job's logger, so they carry its id. */
let lineLog: Logger = log;

/** A test-only fault, at the step it was armed for. */
function triggerFault(): void {
  const fault = pendingFault;
  pendingFault = null;
  if (fault === 'abort') process.abort();
  // Blocks this thread for good, as a native call that never returns would: only SIGKILL ends it.
  if (fault === 'hang') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

async function handle(message: ParentMessage): Promise<void> {
  switch (message.type) {
    case 'start': {
      try {
        engine = await openEngine(message.setup, (line) => lineLog.info(line), (line) => lineLog.warn(line));
        void send({ type: 'ready', info: engine.info });
      } catch (error) {
        await send({ type: 'startFailed', error: toWireError(error) });
        process.exit(1);
      }
      return;
    }
    case 'generate': {
      const { callId, jobId } = message;
      const jobLog = jobId === undefined ? log : log.child({ jobId });
      if (!engine) {
        void send({ type: 'failed', callId, error: toWireError(new Error('the engine received a job before it was ready')) });
        return;
      }
      const controller = new AbortController();
      running.set(callId, controller);
      // With continuous batching several jobs run at once: the pipeline's lines then belong to none of them alone.
      lineLog = running.size === 1 ? jobLog : log;
      const started = performance.now();
      try {
        const output = await engine.generator.generate(
          { ...message.request, seed: BigInt(message.request.seed) },
          {
            signal: controller.signal,
            onProgress: (progress) => {
              if (pendingFault) triggerFault();
              // Sent as is: the serializer copies the latents into the message now, before the pipeline reuses them.
              void send({
                type: 'progress',
                callId,
                step: progress.step,
                totalSteps: progress.totalSteps,
                ...(progress.latents ? { latents: { data: progress.latents.data, shape: [...progress.latents.shape] } } : {}),
                ...(progress.loadingLoras ? { loadingLoras: [...progress.loadingLoras] } : {}),
              });
            },
          },
        );
        jobLog.debug({ ms: Math.round(performance.now() - started), images: output.images.length }, 'engine finished the job');
        void send({
          type: 'done',
          callId,
          images: output.images.map((image) => ({ png: image.png, seed: image.seed.toString(), ...(image.nsfw === undefined ? {} : { nsfw: image.nsfw }) })),
          ...(output.model !== undefined ? { model: output.model } : {}),
          ...(output.promptTokens !== undefined ? { promptTokens: output.promptTokens } : {}),
        });
      } catch (error) {
        if (!(error instanceof CancelledError)) jobLog.debug({ err: error }, 'engine job failed');
        void send({ type: 'failed', callId, error: toWireError(error) });
      } finally {
        running.delete(callId);
        lineLog = log;
      }
      return;
    }
    case 'cancel':
      running.get(message.callId)?.abort(new CancelledError());
      return;
    case 'fault':
      if (debugFaults) pendingFault = message.fault;
      return;
    case 'stop':
      for (const controller of running.values()) controller.abort(new CancelledError());
      await engine?.close().catch((error: unknown) => log.warn({ err: error }, 'could not release the model'));
      process.exit(0);
      return;
  }
}

process.on('message', (message: ParentMessage) => {
  handle(message).catch((error: unknown) => {
    log.fatal({ err: error }, 'the engine process failed');
    void lastSent.finally(() => process.exit(1));
  });
});
// The bot is gone: nothing else keeps this process useful.
process.on('disconnect', () => process.exit());
// Ctrl-C and systemd signal the whole process group: the bot decides when its engine stops (a `stop` message after
// the running job is put back in the queue), so these are not this process's to act on.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
