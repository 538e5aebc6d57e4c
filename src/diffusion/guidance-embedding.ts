/**
 * LCM-distilled UNets (Latent Consistency Models, e.g. SimianLuo/LCM_Dreamshaper_v7) were distilled with the guidance
 * scale as an input: a fourth UNet input `timestep_cond` [batch, time_cond_proj_dim] (256 for SD 1.5 LCMs) that the
 * UNet's TimestepEmbedding projects (`cond_proj`, no bias) and adds to the timestep's projection before `linear_1`.
 * Such a UNet runs one batch row per image: no classifier-free guidance halves, no negative prompt, as diffusers'
 * LatentConsistencyModelPipeline runs it. A UNet without the input (SD 1.5, or SD 1.5 with LCM-LoRA merged in) takes
 * ordinary CFG.
 */
import type { ModelPart } from './model.js';
import { ModelFileError } from './errors.js';

export const TIMESTEP_COND_INPUT = 'timestep_cond';

/**
 * The guidance embedding's width from the UNet's input metadata (`timestep_cond` [batch, D]), or null for a UNet
 * without the input.
 */
export function guidanceEmbeddingDim(unet: Pick<ModelPart, 'file' | 'inputs'>): number | null {
  const input = unet.inputs.get(TIMESTEP_COND_INPUT);
  if (!input) return null;
  const dim = input.shape[1];
  if (input.shape.length !== 2 || typeof dim !== 'number' || dim < 1) {
    throw new ModelFileError(unet.file, `input ${TIMESTEP_COND_INPUT} has shape [${input.shape.join(', ')}]; [batch, embedding size] expected`);
  }
  return dim;
}

const fround = Math.fround;

/**
 * diffusers' `LatentConsistencyModelPipeline.get_guidance_scale_embedding(w, embedding_dim)` for one guidance scale,
 * with `w = guidance_scale − 1` as its `__call__` passes it (LCMs were distilled with the "w + 1" CFG formulation),
 * in float32 as torch computes it:
 *
 *     w · 1000,  half = D / 2,  f_i = exp(−i · log(10000) / (half − 1)),  [sin(w·1000·f_i) …, cos(w·1000·f_i) …]
 *
 * (one zero appended when D is odd).
 */
export function guidanceScaleEmbedding(guidanceScale: number, dim: number): Float32Array {
  const w = fround(fround(guidanceScale - 1) * 1000);
  const half = Math.floor(dim / 2);
  const step = fround(fround(Math.log(10000)) / (half - 1));
  const embedding = new Float32Array(dim);
  for (let i = 0; i < half; i++) {
    const angle = fround(w * fround(Math.exp(fround(i * -step))));
    embedding[i] = Math.sin(angle);
    embedding[half + i] = Math.cos(angle);
  }
  return embedding;
}

/** The `timestep_cond` feed for `rows` UNet rows that share one guidance scale: the embedding repeated per row. */
export function guidanceEmbeddingRows(guidanceScale: number, dim: number, rows: number): Float32Array {
  const embedding = guidanceScaleEmbedding(guidanceScale, dim);
  const feed = new Float32Array(rows * dim);
  for (let row = 0; row < rows; row++) feed.set(embedding, row * dim);
  return feed;
}
