/** The noise schedule every scheduler starts from: betas and alphas_cumprod as torch float32 tensors. */
import { configError, requireInteger, requireNumber } from './config.js';

const fround = Math.fround;

/** The beta-related keys every scheduler takes, with diffusers' defaults. */
export interface BetaConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: number[] | null;
}

export const BETA_DEFAULTS: BetaConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
};

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` as torch 2.x's CPU kernel computes it: a float32 step,
 * values filled from both ends toward the middle, each `start + step·i` one fused multiply-add (torch's AVX2 build
 * contracts it; with this, diffusers' sigma tables match bit for bit).
 */
export function torchLinspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const first = fround(start);
  const last = fround(end);
  if (steps === 1) {
    out[0] = first;
    return out;
  }
  const step = fround((last - first) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? first + step * i : last - step * (steps - i - 1);
  }
  return out;
}

/** diffusers' betas_for_alpha_bar with the cosine ("squaredcos_cap_v2") transform, computed in doubles. */
function cosineBetas(count: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const betas = new Float32Array(count);
  for (let i = 0; i < count; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / count) / alphaBar(i / count), maxBeta);
  return betas;
}

/** The scheduler's `betas` tensor (float32), from beta_schedule or trained_betas. */
export function makeBetas(config: BetaConfig): Float32Array {
  const count = requireInteger(config.num_train_timesteps, 'num_train_timesteps', 2);
  if (config.trained_betas !== null && config.trained_betas !== undefined) {
    if (!Array.isArray(config.trained_betas) || !config.trained_betas.every((b) => typeof b === 'number')) {
      throw configError('"trained_betas" must be a list of numbers');
    }
    return Float32Array.from(config.trained_betas);
  }
  const start = requireNumber(config.beta_start, 'beta_start');
  const end = requireNumber(config.beta_end, 'beta_end');
  switch (config.beta_schedule) {
    case 'linear':
      return torchLinspaceFloat32(start, end, count);
    case 'scaled_linear': {
      const roots = torchLinspaceFloat32(Math.sqrt(start), Math.sqrt(end), count);
      return roots.map((root) => root * root);
    }
    case 'squaredcos_cap_v2':
      return cosineBetas(count);
    default:
      throw configError(`beta_schedule "${String(config.beta_schedule)}" is not supported (linear, scaled_linear, squaredcos_cap_v2)`);
  }
}

/** `torch.cumprod(1 - betas)`: torch accumulates a float32 cumprod in double and stores each partial as float32. */
export function alphasCumprodFrom(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let product = 1;
  for (let i = 0; i < betas.length; i++) {
    product *= fround(1 - betas[i]!);
    out[i] = product;
  }
  return out;
}

/** diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), on float32 betas. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const cumprod = alphasCumprodFrom(betas);
  const roots = cumprod.map((a) => Math.sqrt(a));
  const first = roots[0]!;
  const lastRoot = roots[roots.length - 1]!;
  const scale = fround(first / fround(first - lastRoot));
  const bars = roots.map((root) => {
    const shifted = fround(fround(root - lastRoot) * scale);
    return shifted * shifted;
  });
  const out = new Float32Array(betas.length);
  out[0] = fround(1 - bars[0]!);
  for (let i = 1; i < bars.length; i++) out[i] = fround(1 - fround(bars[i]! / bars[i - 1]!));
  return out;
}

/** `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` as float32 tensor ops, in training order (t = 0 … T−1). */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(fround(fround(1 - a) / a)));
}
