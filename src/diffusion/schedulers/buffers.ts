/** Buffers the schedulers keep between steps, so that the denoising loop allocates nothing in steady state. */

/**
 * Two alternating output buffers: `step` writes into the one it did not return last time, so the caller may pass the
 * previous result back as `sample` (it is only read) without any allocation in steady state.
 */
export class AlternatingBuffers {
  private first: Float32Array | null = null;
  private second: Float32Array | null = null;
  private useSecond = false;

  next(length: number): Float32Array {
    this.useSecond = !this.useSecond;
    if (this.useSecond) {
      if (this.second?.length !== length) this.second = new Float32Array(length);
      return this.second;
    }
    if (this.first?.length !== length) this.first = new Float32Array(length);
    return this.first;
  }
}

/** A Float32Array kept by a scheduler across steps, resized (reallocated) only when the latent size changes. */
export function sized(buffer: Float32Array | null, length: number): Float32Array {
  return buffer !== null && buffer.length === length ? buffer : new Float32Array(length);
}

export function assertSameLength(modelOutput: Float32Array, sample: Float32Array): void {
  if (modelOutput.length !== sample.length) {
    throw new RangeError(`model output has ${modelOutput.length} values but the sample has ${sample.length}`);
  }
}
