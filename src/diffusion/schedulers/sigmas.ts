/** Sigma (noise level) arithmetic of the sigma-based schedulers: diffusers' `_sigma_to_t`, Karras, exponential. */
import { numpyLinspace } from './numpy.js';

const fround = Math.fround;

/** diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma a sigma falls on. */
export function sigmaToTimestep(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // Last index whose log-sigma is ≤ logSigma (0 when none is), at most len − 2.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lowLog = logSigmas[low]!;
  const highLog = logSigmas[low + 1]!;
  let w = (lowLog - logSigma) / (lowLog - highLog);
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** `np.log` of a float32 array stays float32. */
export function logFloat32(values: Float32Array): Float32Array {
  return values.map((v) => Math.log(v));
}

/** Karras et al. (2022) noise levels: ρ = 7 interpolation between sigmaMax and sigmaMin, `count` values. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, count: number): Float64Array {
  const rho = 7;
  const ramp = numpyLinspace(0, 1, count);
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/** diffusers' exponential sigma schedule: log-linear from sigmaMax to sigmaMin. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, count: number): Float64Array {
  return numpyLinspace(Math.log(sigmaMax), Math.log(sigmaMin), count).map((v) => Math.exp(v));
}

/** The factor `scale_model_input` applies at σ: 1/√(σ² + 1) in float32 steps. */
export function inputScaleFor(sigma: number): number {
  return 1 / fround(Math.sqrt(fround(fround(sigma * sigma) + 1)));
}

/** `sample / (sigma² + 1) ** 0.5` with diffusers' float32 scalar, into `out`. */
export function scaleBySigma(sample: Float32Array, sigma: number, out: Float32Array): Float32Array {
  const scale = inputScaleFor(sigma);
  for (let i = 0; i < sample.length; i++) out[i] = sample[i]! * scale;
  return out;
}
