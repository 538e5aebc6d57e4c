/**
 * A1111's default ("Original") emphasis (stable-diffusion-webui, modules/sd_emphasis.py `EmphasisOriginal`):
 * after the text encoder has run on a chunk, multiply each token's hidden state by that token's weight, then scale
 * the whole chunk so its mean over all tokens and channels is what it was before the weighting.
 *
 * A1111 takes the mean per encoded chunk (`process_tokens` runs once per chunk), so each 77-token row is restored
 * on its own. Its batch holds copies of the same prompt, whose mean is the one row's mean.
 */

/**
 * Applies the emphasis to one chunk's hidden states, in place.
 * @param hidden the text encoder's output for the chunk, [tokens, dim] in row-major order
 * @param weights one weight per token (the chunk's `weights`)
 */
export function applyOriginalEmphasis(hidden: Float32Array, weights: ArrayLike<number>, dim: number): void {
  const tokens = weights.length;
  if (hidden.length !== tokens * dim) {
    throw new RangeError(`hidden states hold ${hidden.length} values, expected ${tokens} tokens × ${dim}`);
  }
  let weightsAreAllOne = true;
  for (let t = 0; t < tokens; t++) if (weights[t] !== 1) weightsAreAllOne = false;
  // Multiplying by 1 and by mean/mean changes nothing: skip the work (A1111's result is the same tensor).
  if (weightsAreAllOne) return;

  const originalMean = mean(hidden);
  for (let t = 0; t < tokens; t++) {
    const weight = Math.fround(weights[t]!);
    const row = hidden.subarray(t * dim, (t + 1) * dim);
    for (let c = 0; c < dim; c++) row[c]! *= weight;
  }
  const newMean = mean(hidden);
  // A1111 scales by (original_mean / new_mean) as one float32 factor.
  const factor = Math.fround(Math.fround(originalMean) / Math.fround(newMean));
  for (let i = 0; i < hidden.length; i++) hidden[i]! *= factor;
}

/**
 * Applies the emphasis to every chunk of a prompt encoded as one batch: `hidden` is [chunks, tokens, dim], which read
 * as [1, chunks × tokens, dim] is the prompt's chunks concatenated along the sequence axis, as the UNet takes them.
 */
export function applyOriginalEmphasisToChunks(hidden: Float32Array, chunkWeights: readonly ArrayLike<number>[], dim: number): void {
  let offset = 0;
  for (const weights of chunkWeights) {
    const size = weights.length * dim;
    applyOriginalEmphasis(hidden.subarray(offset, offset + size), weights, dim);
    offset += size;
  }
  if (offset !== hidden.length) {
    throw new RangeError(`hidden states hold ${hidden.length} values, the chunks account for ${offset}`);
  }
}

/** Mean of a float32 tensor, summed in float64 (torch sums float32 pairwise; the two agree to float32 rounding). */
function mean(values: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return sum / values.length;
}
