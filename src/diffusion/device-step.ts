/**
 * The arithmetic between two UNet calls (classifier-free guidance and a first-order scheduler update), as a tiny ONNX
 * graph that runs on the same execution provider as the UNet, so that on WebGPU the latents never leave the GPU.
 *
 * Why: onnxruntime-node 1.30 can leave the UNet's output on the GPU (`preferredOutputLocation: 'gpu-buffer'`) but
 * cannot read it from JS (see providers.ts); the JS scheduler would force a read-back every step. Every update of the
 * form
 *
 *     latents' = a·latents + b·guided (+ n·noise),   guided = uncond + g·(cond − uncond)
 *
 * is linear in (latents, uncond, cond, noise): Euler, Euler ancestral (noise from the CPU generator) and DDIM (η = 0,
 * no clip_sample) are, with a, b, n computed on the CPU from the scheduler's sigmas/alphas by `Scheduler.linearStep`.
 * Expanding: latents' = a·latents + b(1−g)·uncond + b·g·cond (+ n·noise). The graph also emits the next UNet input:
 * both CFG halves of `k·latents'` (k = the scheduler's input scale for the next step, e.g. 1/√(σ²+1) for Euler), in
 * the UNet's dtype. Multistep schedulers (PNDM's PLMS, DPM++ 2M, LMS) also need earlier predictions and are not
 * covered. The production loop using it is the pipeline's loop over `DeviceLoopStepper` (steppers.ts).
 *
 * Latents are float32 in the graph whatever the UNet's dtype (casts at the boundary), like the CPU pipeline.
 */
import * as ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';

import { buildModel, type NodeSpec } from './onnx-builder.js';
import { openSession, type ProviderName } from './providers.js';

export interface DeviceStepShape {
  /** Images per batch (the UNet batch is twice this: uncond then cond, as diffusers concatenates them). */
  images: number;
  channels: number;
  height: number;
  width: number;
}

/** Per-step scalars, computed on the CPU by the scheduler. */
export interface DeviceStepCoefficients {
  /** Factor on the current latents. */
  latents: number;
  /** Factor on the guided noise prediction. */
  prediction: number;
  /** Classifier-free guidance scale. */
  guidance: number;
  /** Factor on the extra noise input (ancestral samplers); 0 without one. */
  noise?: number;
  /** Scale of the next UNet input (`scale_model_input`), 1 for schedulers that do not scale. */
  nextInputScale: number;
}

const FLOAT = 1;
const FLOAT16 = 10;

/**
 * The step graph for a UNet of `unetDtype`; `withNoise` adds the `noise` input. Without guidance (cfg ≤ 1: the UNet
 * batch is the images alone) the prediction is used as it is and the next input is `k·latents'` once. Exported for
 * tests.
 */
export function buildStepModel(unetDtype: 'float32' | 'float16', withNoise: boolean, withGuidance = true): Uint8Array {
  const half = unetDtype === 'float16';
  const nodes: NodeSpec[] = [];
  const prediction = half ? 'prediction_f32' : 'noise_pred';
  if (half) nodes.push({ opType: 'Cast', inputs: ['noise_pred'], outputs: [prediction], attributes: { to: FLOAT } });
  nodes.push(
    {
      opType: 'Split',
      inputs: ['coefficients'],
      outputs: ['c_latents', 'c_uncond', 'c_cond', 'c_noise', 'c_input'],
      attributes: { axis: 0 },
    },
    { opType: 'Mul', inputs: ['latents', 'c_latents'], outputs: ['t_latents'] },
  );
  if (withGuidance) {
    nodes.push(
      // Equal split along the batch: the first half is the unconditional prediction, the second the conditional.
      { opType: 'Split', inputs: [prediction], outputs: ['uncond', 'cond'], attributes: { axis: 0 } },
      { opType: 'Mul', inputs: ['uncond', 'c_uncond'], outputs: ['t_uncond'] },
      { opType: 'Mul', inputs: ['cond', 'c_cond'], outputs: ['t_cond'] },
      { opType: 'Add', inputs: ['t_latents', 't_uncond'], outputs: ['s_1'] },
      { opType: 'Add', inputs: ['s_1', 't_cond'], outputs: ['s_2'] },
    );
  } else {
    // c_uncond carries the prediction's factor (see DeviceStepper.step).
    nodes.push(
      { opType: 'Mul', inputs: [prediction, 'c_uncond'], outputs: ['t_prediction'] },
      { opType: 'Add', inputs: ['t_latents', 't_prediction'], outputs: ['s_2'] },
    );
  }
  if (withNoise) {
    nodes.push(
      { opType: 'Mul', inputs: ['noise', 'c_noise'], outputs: ['t_noise'] },
      { opType: 'Add', inputs: ['s_2', 't_noise'], outputs: ['latents_next'] },
    );
  } else {
    nodes.push({ opType: 'Identity', inputs: ['s_2'], outputs: ['latents_next'] });
  }
  const sample = half ? 'sample_f32' : 'sample_next';
  nodes.push({ opType: 'Mul', inputs: ['latents_next', 'c_input'], outputs: [withGuidance ? 'scaled' : sample] });
  if (withGuidance) nodes.push({ opType: 'Concat', inputs: ['scaled', 'scaled'], outputs: [sample], attributes: { axis: 0 } });
  if (half) nodes.push({ opType: 'Cast', inputs: [sample], outputs: ['sample_next'], attributes: { to: FLOAT16 } });
  const shape = ['images', 'channels', 'height', 'width'];
  const batchShape = withGuidance ? ['unet_batch', 'channels', 'height', 'width'] : shape;
  return buildModel({
    inputs: [
      { name: 'noise_pred', type: unetDtype, shape: batchShape },
      { name: 'latents', type: 'float32', shape },
      { name: 'coefficients', type: 'float32', shape: [5] },
      ...(withNoise ? [{ name: 'noise', type: 'float32' as const, shape }] : []),
    ],
    outputs: [
      { name: 'latents_next', type: 'float32', shape },
      { name: 'sample_next', type: unetDtype, shape: batchShape },
    ],
    nodes,
  });
}

/**
 * Runs CFG + a first-order scheduler update on the UNet's provider. On WebGPU, open it with `keepOnDevice` so both
 * outputs stay on the GPU: feed `sample` to the next UNet call and `latents` to the next step; dispose each once
 * consumed. Read latents for a preview or the final decode with `GpuTensorReader` (or feed them to the VAE after a
 * scaling step).
 */
export class DeviceStepper {
  private readonly coefficients = new Float32Array(5);
  private readonly coefficientTensor: ort.Tensor;

  private constructor(
    private readonly session: InferenceSession,
    readonly withNoise: boolean,
    readonly withGuidance: boolean,
  ) {
    this.coefficientTensor = new ort.Tensor('float32', this.coefficients, [5]);
  }

  static async open(
    provider: ProviderName,
    unetDtype: 'float32' | 'float16',
    options: { withNoise?: boolean; keepOnDevice?: boolean; withGuidance?: boolean } = {},
  ): Promise<DeviceStepper> {
    const withNoise = options.withNoise ?? false;
    const withGuidance = options.withGuidance ?? true;
    const session = await openSession(buildStepModel(unetDtype, withNoise, withGuidance), provider, {
      preferGpuOutputs: options.keepOnDevice ? true : undefined,
    });
    return new DeviceStepper(session, withNoise, withGuidance);
  }

  /**
   * One update. `noisePrediction` is the UNet output (any location), `latents` float32 [images, C, H, W] (a CPU
   * tensor on the first step, then the previous step's output), `noise` float32 of the same shape when opened
   * `withNoise`.
   */
  async step(
    noisePrediction: ort.Tensor,
    latents: ort.Tensor,
    coefficients: DeviceStepCoefficients,
    noise?: ort.Tensor,
  ): Promise<{ latents: ort.Tensor; sample: ort.Tensor }> {
    // Without guidance the graph multiplies the prediction by the second coefficient alone.
    const guidance = this.withGuidance ? coefficients.guidance : 0;
    this.coefficients[0] = coefficients.latents;
    this.coefficients[1] = coefficients.prediction * (1 - guidance);
    this.coefficients[2] = coefficients.prediction * guidance;
    this.coefficients[3] = coefficients.noise ?? 0;
    this.coefficients[4] = coefficients.nextInputScale;
    const feeds: Record<string, ort.Tensor> = {
      noise_pred: noisePrediction,
      latents,
      coefficients: this.coefficientTensor,
    };
    if (this.withNoise) {
      if (!noise) throw new Error('this DeviceStepper was opened withNoise: pass the noise tensor');
      feeds.noise = noise;
    }
    const out = await this.session.run(feeds);
    return { latents: out.latents_next!, sample: out.sample_next! };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
