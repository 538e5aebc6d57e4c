/**
 * Pinning a model's symbolic input dimensions (ORT's freeDimensionOverrides, which onnxruntime-node lacks): the
 * rewritten protobuf is read back by ONNX Runtime itself, the pinned UNet computes what the exported one does, ORT's
 * optimiser then folds the shape arithmetic away, and the pipeline reopens the UNet when a generation's shapes change.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ModelFileError } from '../../src/diffusion/errors.js';
import { loadPipeline } from '../../src/diffusion/load.js';
import { graphOpTypes } from '../../src/diffusion/onnx-proto.js';
import { declaredInputShapes, pinInputShapes, ShapePinError } from '../../src/diffusion/pin-shapes.js';
import type { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { openSession } from '../../src/diffusion/providers.js';
import {
  assertWithinReference,
  EXACT_BOUNDS,
  loadCase,
  measureAgainstReference,
  requestFor,
  runReferenceCase,
  TINY_MODEL,
} from '../helpers/reference.js';
import { assertRewriteComputesTheSame, tinyUnetFeeds } from '../helpers/rewritten-model.js';

const UNET_FILE = join(TINY_MODEL, 'unet/model.onnx');
/** CFG batch 2 at 64×64 pixels (8×8 latents) with CLIP's 77 tokens; the tiny UNet's text width is 32. */
const SHAPES = { sample: [2, 4, 8, 8], timestep: [2], encoder_hidden_states: [2, 77, 32] };

const unetFeeds = (): Record<string, ort.Tensor> => tinyUnetFeeds(8, 801);

describe('pinInputShapes', () => {
  let exported: Uint8Array;
  before(async () => {
    exported = new Uint8Array(await readFile(UNET_FILE));
  });

  test('reads the shapes the export declared and pins the symbolic ones', () => {
    // As diffusers' ONNX export wrote them (python's onnx package shows the same names).
    assert.deepEqual(declaredInputShapes(exported), {
      sample: ['batch', 'channels', 'height', 'width'],
      timestep: ['batch'],
      encoder_hidden_states: ['batch', 'sequence', 32],
    });
    const pinned = pinInputShapes(exported, SHAPES);
    assert.deepEqual(declaredInputShapes(pinned), SHAPES);
    // Only the inputs named change.
    assert.deepEqual(declaredInputShapes(pinInputShapes(exported, { timestep: [1] })), {
      sample: ['batch', 'channels', 'height', 'width'],
      timestep: [1],
      encoder_hidden_states: ['batch', 'sequence', 32],
    });
    // The nodes are untouched.
    assert.deepEqual(graphOpTypes(pinned), graphOpTypes(exported));
  });

  test('ONNX Runtime reads the rewritten model: its metadata has the pinned sizes, other shapes are refused', async () => {
    const session = await openSession(UNET_FILE, 'cpu', { pinnedShapes: SHAPES });
    try {
      const metadata = Object.fromEntries(session.inputNames.map((name, index) => [name, session.inputMetadata[index]]));
      for (const [name, dims] of Object.entries(SHAPES)) {
        const entry = metadata[name];
        assert.ok(entry?.isTensor);
        assert.deepEqual(entry.shape, dims, name);
      }
      const feeds = unetFeeds();
      await assert.rejects(
        session.run({ ...feeds, sample: new ort.Tensor('float32', new Float32Array(2 * 4 * 16 * 16), [2, 4, 16, 16]) }),
        /invalid dimensions/i,
      );
    } finally {
      await session.release();
    }
  });

  test('the pinned UNet computes what the exported one does (weights from weights.pb beside it)', async () => {
    // Same weights, same arithmetic; only ORT's fusions differ (measured 7e-7).
    await assertRewriteComputesTheSame(UNET_FILE, { pinnedShapes: SHAPES }, unetFeeds(), 1e-5);
  });

  test("ORT's optimiser folds the export's shape arithmetic away once the shapes are pinned", async () => {
    const folder = await mkdtemp(join(tmpdir(), 'imagine-pin-'));
    try {
      const optimised = async (label: string, pinnedShapes?: typeof SHAPES): Promise<string[]> => {
        const file = join(folder, `${label}.onnx`);
        const bytes = new Uint8Array(await readFile(UNET_FILE));
        const model = pinnedShapes ? pinInputShapes(bytes, pinnedShapes) : bytes;
        const session = await ort.InferenceSession.create(model, {
          graphOptimizationLevel: 'all',
          optimizedModelFilePath: file,
          logSeverityLevel: 3,
          extra: { session: { model_external_initializers_file_folder_path: join(TINY_MODEL, 'unet') } },
        });
        await session.release();
        return graphOpTypes(new Uint8Array(await readFile(file)));
      };
      const dynamic = await optimised('dynamic');
      const pinned = await optimised('pinned', SHAPES);
      const count = (ops: string[], op: string): number => ops.filter((type) => type === op).length;
      // Measured with onnxruntime-node 1.30: 1106 nodes with 75 Shape nodes before, 663 with none after.
      assert.ok(count(dynamic, 'Shape') > 50, `the export computes shapes at run time (${count(dynamic, 'Shape')} Shape nodes)`);
      assert.equal(count(pinned, 'Shape'), 0);
      assert.ok(pinned.length < 0.7 * dynamic.length, `${pinned.length} nodes pinned vs ${dynamic.length}`);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  test('refuses what cannot be pinned, naming the input', () => {
    const exportedBytes = exported;
    assert.throws(() => pinInputShapes(exportedBytes, { sample: [2, 4, 8] }), /input sample has 4 dimensions \[batch, channels, height, width\], not 3/);
    assert.throws(
      () => pinInputShapes(exportedBytes, { encoder_hidden_states: [2, 77, 768] }),
      /input encoder_hidden_states is declared \[batch, sequence, 32\]; it cannot take \[2, 77, 768\]/,
    );
    assert.throws(() => pinInputShapes(exportedBytes, { latents: [1] }), /the model has no input named latents/);
    assert.throws(() => pinInputShapes(exportedBytes, { sample: [2, 4, 0, 8] }), ShapePinError);
    assert.throws(() => pinInputShapes(Uint8Array.from([0x3a, 0x02, 0x08]), SHAPES), /truncated protobuf/);
  });
});

describe('pipeline with pinUnetShapes', () => {
  let pipeline: StableDiffusionPipeline;
  const lines: string[] = [];
  before(async () => {
    pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', pinUnetShapes: true, log: (line) => lines.push(line) });
  });
  after(async () => {
    await pipeline.release();
    await pipeline.model.release();
  });

  // A function, so TypeScript does not narrow the getter's value across the generations that change it.
  const pinnedNow = (): Readonly<Record<string, readonly number[]>> | null => pipeline.model.unetPinnedShapes;

  test('reproduces diffusers, reopening the UNet only when the shapes change', async () => {
    assert.equal(pinnedNow(), null, 'loaded as exported');
    const reference = loadCase('p1');
    for (const deviceLoop of ['never', 'always'] as const) {
      const run = await runReferenceCase(pipeline, reference, { deviceLoop });
      assertWithinReference(run, await measureAgainstReference(run), EXACT_BOUNDS, `p1 pinned, ${deviceLoop}`);
    }
    const [height, width] = [reference.height / 8, reference.width / 8];
    assert.deepEqual(pinnedNow(), {
      sample: [2, 4, height, width],
      timestep: [2],
      encoder_hidden_states: [2, 77, 32],
    });
    assert.equal(lines.filter((line) => line.startsWith('UNet reopened')).length, 1, lines.join('\n'));
    assert.match(lines.find((line) => line.startsWith('UNet reopened'))!, new RegExp(`sample \\[2, 4, ${height}, ${width}\\]`));

    // Without guidance the UNet batch halves: new shapes, reopened again.
    await pipeline.generate({ ...requestFor(reference), cfg: 1, steps: 2 });
    assert.deepEqual(pinnedNow()?.sample, [1, 4, height, width]);
    assert.equal(lines.filter((line) => line.startsWith('UNet reopened')).length, 2);
  });

  test('a shape the UNet cannot take fails with the file named and leaves the UNet working', async () => {
    const before = pinnedNow();
    await assert.rejects(pipeline.model.pinUnetShapes({ sample: [2, 4, 8] }), (error: unknown) => {
      assert.ok(error instanceof ModelFileError);
      assert.match(error.message, /unet\/model\.onnx/);
      assert.match(error.message, /input sample has 4 dimensions/);
      return true;
    });
    assert.deepEqual(pinnedNow(), before);
    const reference = loadCase('p1');
    const run = await runReferenceCase(pipeline, reference, { deviceLoop: 'never' });
    assertWithinReference(run, await measureAgainstReference(run), EXACT_BOUNDS, 'p1 after a failed pin');
  });
});
