/**
 * The engine in its own process (src/app/engine-process.ts) with a real child on the tiny model: images identical to
 * the in-thread engine, progress with latents crossing the process boundary, cancellation, and the three ways an
 * engine dies — a native abort, SIGKILL (what the OOM killer sends), a step that never ends — each becoming a failed
 * job with a clear message, followed by a restarted engine that serves the next job.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EngineProcess } from '../../src/app/engine-process.js';
import { openEngine, type Engine, type EngineSetup } from '../../src/app/engine.js';
import { readTextChunks } from '../../src/diffusion/png.js';
import { CancelledError, EngineCrashedError, ImagineError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import type { GenerationProgress, GenerationRequest } from '../../src/queue/types.js';
import { TINY_MODEL } from '../discord/harness.js';

const setup: EngineSetup = {
  modelFolder: TINY_MODEL,
  provider: 'cpu',
  safetyChecker: true,
  pinUnetShapes: false,
  fuseAttention: false,
  previewIntervalMs: 0,
  warmUp: { width: 64, height: 64, cfg: 7, scheduler: null },
};

const request: GenerationRequest = {
  prompt: 'a tiny test', negative: 'noise', seed: 41n, steps: 3, cfg: 5, width: 64, height: 64, scheduler: 'euler', count: 2, rng: 'cpu',
};

interface Line {
  level: number;
  msg: string;
  module?: string;
  [key: string]: unknown;
}

function collectingLogger(): { lines: Line[]; log: ReturnType<typeof createLogger> } {
  const lines: Line[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(JSON.parse(line) as Line) } });
  return { lines, log };
}

const run = () => ({ signal: new AbortController().signal });

describe('EngineProcess', () => {
  let engine: EngineProcess;
  let inThread: Engine;
  const { lines, log } = collectingLogger();

  before(async () => {
    engine = await EngineProcess.start({ setup, log, stepTimeoutMs: 1_000, debugFaults: true });
    inThread = await openEngine({ ...setup, warmUp: null }, () => undefined);
  });
  after(async () => {
    await engine?.close();
    await inThread?.close();
  });

  test('loads and warms up in a child process whose log lines reach the bot log under module engine', () => {
    assert.ok(engine.pid !== undefined && engine.pid !== process.pid);
    assert.deepEqual(engine.info, { modelName: 'tiny-sd', provider: 'cpu', modelScheduler: 'pndm' });
    const engineLines = lines.filter((line) => line.module === 'engine').map((line) => line.msg);
    assert.ok(engineLines.some((msg) => /^model tiny-sd loaded on cpu in \d/.test(msg)), engineLines.join('\n'));
    assert.ok(engineLines.some((msg) => /^warmed up in [\d.]+s \(64×64, 1 image, cfg 7\)$/.test(msg)), engineLines.join('\n'));
  });

  test('the same PNGs as the engine on this thread; every step and its latents cross the boundary', async () => {
    const progress: GenerationProgress[] = [];
    const fromChild = await engine.generate(request, { ...run(), jobId: 'job-1', onProgress: (p) => void progress.push(p) });
    const local = await inThread.generator.generate(request, run());
    assert.equal(fromChild.model, 'tiny-sd');
    assert.deepEqual(fromChild.images.map((image) => image.seed), [41n, 42n]);
    assert.equal(fromChild.images.length, local.images.length);
    fromChild.images.forEach((image, i) => {
      assert.ok(Buffer.from(image.png).equals(Buffer.from(local.images[i]!.png)), `image ${i} is the in-thread engine's PNG`);
      assert.equal(image.nsfw, local.images[i]!.nsfw);
    });
    assert.match(readTextChunks(Buffer.from(fromChild.images[1]!.png))['parameters']!, /Seed: 42, Size: 64x64, Model: tiny-sd$/);
    // The job's 2 images are one batched run of 3 steps.
    assert.deepEqual(progress.map((p) => p.step), [1, 2, 3]);
    // previewIntervalMs 0: every step carries the batch's latents, as a Float32Array of the latent shape.
    assert.ok(progress.every((p) => p.latents?.data instanceof Float32Array && p.latents.data.length === 2 * 4 * 8 * 8 && p.latents.shape.join() === '2,4,8,8'));
    assert.ok(lines.some((line) => line.module === 'engine' && line.msg === 'engine finished the job' && line['jobId'] === 'job-1'), 'the child logs with the job id');
  });

  test('an img2img job: the init image\'s bytes cross to the child, and its PNG is the in-thread engine\'s', async () => {
    const first = await inThread.generator.generate({ ...request, count: 1 }, run());
    const img2img: GenerationRequest = { ...request, count: 1, initImage: { data: first.images[0]!.png, strength: 0.7 } };
    const fromChild = await engine.generate(img2img, run());
    const local = await inThread.generator.generate(img2img, run());
    assert.ok(Buffer.from(fromChild.images[0]!.png).equals(Buffer.from(local.images[0]!.png)));
    assert.match(readTextChunks(Buffer.from(fromChild.images[0]!.png))['parameters']!, /Denoising strength: 0\.7$/);
  });

  test('cancellation stops the child between steps; the next job runs normally', async () => {
    const controller = new AbortController();
    let steps = 0;
    await assert.rejects(
      engine.generate({ ...request, steps: 40, count: 1 }, {
        signal: controller.signal,
        onProgress: () => {
          steps += 1;
          if (steps === 2) controller.abort(new CancelledError());
        },
      }),
      CancelledError,
    );
    assert.ok(steps < 40, `stopped after ${steps} steps`);
    const next = await engine.generate({ ...request, count: 1 }, run());
    assert.equal(next.images.length, 1);
  });

  /** A crash of some kind during a job: the job fails with `message`, the next job succeeds in a new process. */
  async function survives(crash: () => void, message: RegExp): Promise<void> {
    const before = engine.pid;
    const linesBefore = lines.length;
    let crashed = false;
    const failed = engine.generate({ ...request, steps: 40, count: 1 }, {
      ...run(),
      jobId: 'job-crash',
      onProgress: () => {
        if (crashed) return;
        crashed = true;
        crash();
      },
    });
    await assert.rejects(failed, (error: unknown) => {
      assert.ok(error instanceof EngineCrashedError, String(error));
      assert.equal(error.code, 'engine_crashed');
      assert.match(error.message, /^The image engine crashed \(.+\); it has been restarted\. Try again\.$/);
      assert.match(error.message, message);
      return true;
    });
    const crashLine = lines.slice(linesBefore).find((line) => line.msg === 'engine process crashed');
    assert.ok(crashLine, 'the crash is logged');
    assert.equal(crashLine['jobId'], 'job-crash');
    const next = await engine.generate({ ...request, count: 1 }, run());
    assert.equal(next.images.length, 1);
    assert.notEqual(engine.pid, before, 'a new engine process served the next job');
  }

  test('a native abort in the engine fails the job with a clear message; the engine is restarted', async () => {
    await survives(() => engine.injectFault('abort'), /native abort, SIGABRT/);
  });

  test('SIGKILL of the engine (what the OOM killer does) fails the job; the engine is restarted', async () => {
    await survives(() => process.kill(engine.pid!, 'SIGKILL'), /killed by SIGKILL/);
  });

  test('a step that never ends: after the step timeout the engine is killed, the job fails, the next one runs', async () => {
    await survives(() => engine.injectFault('hang'), /stopped responding: no progress for 1 s/);
  });
});

describe('EngineProcess with continuous batching (maxBatch 6)', () => {
  let engine: EngineProcess;
  let inThread: Engine;
  const { lines, log } = collectingLogger();

  before(async () => {
    engine = await EngineProcess.start({ setup: { ...setup, maxBatch: 6, warmUp: null }, log, stepTimeoutMs: 5_000, debugFaults: true });
    inThread = await openEngine({ ...setup, warmUp: null }, () => undefined);
  });
  after(async () => {
    await engine?.close();
    await inThread?.close();
  });

  test('overlapping jobs run in the one child, each with its own progress and its own images; a cancel spares the others', async () => {
    const steps = new Map<string, number[]>();
    const order: string[] = [];
    const progressOf = (name: string) => (p: GenerationProgress) => {
      steps.set(name, [...(steps.get(name) ?? []), p.step]);
      order.push(`${name}${p.step}`);
    };
    const cancel = new AbortController();
    const jobs = {
      a: { ...request, steps: 12 },
      b: { ...request, seed: 7n, count: 1, cfg: 1, scheduler: 'dpmpp_2m' as const, steps: 5 },
      c: { ...request, seed: 9n, count: 1, steps: 40 },
    };
    const a = engine.generate(jobs.a, { ...run(), jobId: 'a', onProgress: progressOf('a') });
    const b = engine.generate(jobs.b, { ...run(), jobId: 'b', onProgress: progressOf('b') });
    const c = engine.generate(jobs.c, {
      signal: cancel.signal,
      jobId: 'c',
      onProgress: (p) => {
        progressOf('c')(p);
        if (p.step === 3) cancel.abort(new CancelledError());
      },
    });
    await assert.rejects(c, CancelledError);
    const [fromA, fromB] = await Promise.all([a, b]);
    assert.deepEqual(steps.get('a'), Array.from({ length: 12 }, (_, i) => i + 1));
    assert.deepEqual(steps.get('b'), [1, 2, 3, 4, 5]);
    assert.ok((steps.get('c')?.length ?? 0) < 40);
    assert.ok(order.indexOf('b5') < order.indexOf('a12'), `b ran beside a: ${order.join(' ')}`);
    for (const [name, result] of [['a', fromA], ['b', fromB]] as const) {
      const local = await inThread.generator.generate(jobs[name], run());
      result.images.forEach((image, i) => {
        assert.ok(Buffer.from(image.png).equals(Buffer.from(local.images[i]!.png)), `${name} image ${i} is the job's PNG made alone`);
      });
    }
    assert.ok(!lines.some((line) => line.msg === 'engine process crashed'));
  });

  test('a crash fails every job the child ran, and the restarted child serves the next', async () => {
    const before = engine.pid;
    let crashed = false;
    const crashOnce = () => {
      if (crashed) return;
      crashed = true;
      process.kill(engine.pid!, 'SIGKILL');
    };
    const first = engine.generate({ ...request, steps: 40 }, { ...run(), jobId: 'x' });
    const second = engine.generate({ ...request, seed: 3n, count: 1, steps: 40 }, { ...run(), jobId: 'y', onProgress: crashOnce });
    await assert.rejects(first, EngineCrashedError);
    await assert.rejects(second, EngineCrashedError);
    const crashLine = lines.find((line) => line.msg === 'engine process crashed');
    assert.deepEqual(crashLine?.['jobIds'], ['x', 'y']);
    const next = await engine.generate({ ...request, count: 1 }, run());
    assert.equal(next.images.length, 1);
    assert.notEqual(engine.pid, before);
  });
});

test('a model the engine cannot load: start rejects with the engine\'s own user-facing error, and no process is left', async () => {
  const { lines, log } = collectingLogger();
  await assert.rejects(EngineProcess.start({ setup: { ...setup, modelFolder: '/nonexistent/model' }, log, stepTimeoutMs: 1_000 }), (error: unknown) => {
    assert.ok(error instanceof ImagineError, String(error));
    assert.equal(error.code, 'model_file');
    assert.equal(error.message, '/nonexistent/model: model folder does not exist');
    return true;
  });
  const started = lines.find((line) => line.msg === 'engine process started');
  assert.ok(started, 'the engine process was started');
  const pid = started['pid'] as number;
  // It exits on its own right after reporting the error.
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(!isAlive(pid), 'the failed engine process exited');
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a start that does not finish in time is killed and fails, saying so', async () => {
  const { log } = collectingLogger();
  await assert.rejects(
    EngineProcess.start({ setup, log, stepTimeoutMs: 1_000, startTimeoutMs: 1 }),
    /^Error: the engine process ended while loading the model \(it did not finish loading the model within 0\.001 s\)/,
  );
});
