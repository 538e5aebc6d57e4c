/**
 * diffusers' `add_noise(original_samples, noise, timesteps)`, the forward diffusion img2img starts from, in the three
 * forms its schedulers use, each in diffusers' float32 order (the scalars are float32 tensors, every product and sum
 * is rounded to float32):
 * - over ᾱ (DDPM-style: PNDM, DDIM, LCM): √ᾱ_t · x + √(1 − ᾱ_t) · ε;
 * - over σ (Euler, Euler a, LMS, Heun): x + ε · σ;
 * - over σ as (α_t, σ_t) (DPM-Solver++, UniPC): α_t · x + σ_t · ε with α_t = 1/√(σ² + 1), σ_t = σ · α_t.
 * Each returns a new array; `original` and `noise` are left as they are.
 */

const fround = Math.fround;

function assertSameLength(original: Float32Array, noise: Float32Array): void {
  if (original.length !== noise.length) throw new RangeError(`the noise has ${noise.length} values but the latents have ${original.length}`);
}

/** `alphas_cumprod[t] ** 0.5 * x + (1 − alphas_cumprod[t]) ** 0.5 * ε` for an integer training timestep t. */
export function addNoiseOverAlphas(alphasCumprod: Float32Array, timestep: number, original: Float32Array, noise: Float32Array): Float32Array {
  assertSameLength(original, noise);
  const alphaProd = alphasCumprod[timestep];
  if (alphaProd === undefined || !Number.isInteger(timestep)) throw new RangeError(`timestep ${timestep} is outside the training schedule`);
  const rootAlpha = fround(Math.sqrt(alphaProd));
  const rootOneMinusAlpha = fround(Math.sqrt(fround(1 - alphaProd)));
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) out[i] = fround(rootAlpha * original[i]!) + fround(rootOneMinusAlpha * noise[i]!);
  return out;
}

/** `x + ε · σ`. */
export function addNoiseOverSigma(sigma: number, original: Float32Array, noise: Float32Array): Float32Array {
  assertSameLength(original, noise);
  const sigma32 = fround(sigma);
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) out[i] = original[i]! + fround(noise[i]! * sigma32);
  return out;
}

/** `α_t · x + σ_t · ε`, diffusers' `_sigma_to_alpha_sigma_t` (not flow sigmas, which we reject at construction). */
export function addNoiseOverAlphaSigma(sigma: number, original: Float32Array, noise: Float32Array): Float32Array {
  assertSameLength(original, noise);
  const sigma32 = fround(sigma);
  const alphaT = fround(1 / fround(Math.sqrt(fround(fround(sigma32 * sigma32) + 1))));
  const sigmaT = fround(sigma32 * alphaT);
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) out[i] = fround(alphaT * original[i]!) + fround(sigmaT * noise[i]!);
  return out;
}
