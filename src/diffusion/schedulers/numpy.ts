/**
 * How the schedulers reproduce diffusers' arithmetic (and through it torch's and numpy's), closely enough that
 * timesteps and sigmas match diffusers' tables to float32 precision:
 * - torch float32 tensors (betas, alphas_cumprod, sigmas) are Float32Arrays built with the same operation order,
 *   rounding each float32 operation with Math.fround (betas.ts, sigmas.ts);
 * - numpy float64 code (np.linspace, np.arange, np.interp, np.round's half-to-even, _sigma_to_t, Karras) is done in
 *   doubles with numpy's own formulas (numpy.ts), because numpy's arange and linspace fill differently from the
 *   obvious formula, and that changes some timestep lists.
 * The per-element step loops, on the other hand, compute in doubles from float32 scalars and round once on store:
 * torch's per-operation float32 rounding is not worth its cost there (~1e-7 relative, far below the UNet's noise).
 */

/** `np.linspace(start, stop, num)` (endpoint included): `i · step + start`, the last value exactly `stop`. */
export function numpyLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const step = div > 0 ? (stop - start) / div : NaN;
  for (let i = 0; i < num; i++) out[i] = (div > 0 ? i * step : i * (stop - start)) + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/**
 * `np.arange(start, stop, step)` for floats: length `ceil((stop − start) / step)`, values `start`, `start + step`,
 * then `start + i · delta` with `delta = (start + step) − start` (numpy's fill), which can differ from `i · step`.
 */
export function numpyArange(start: number, stop: number, step: number): Float64Array {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(length);
  if (length > 0) out[0] = start;
  if (length > 1) out[1] = start + step;
  const delta = start + step - start;
  for (let i = 2; i < length; i++) out[i] = start + i * delta;
  return out;
}

/** `np.interp(x, np.arange(len(fp)), fp)`: linear interpolation over integer knots, clamped at both ends. */
export function interpolateAtIndex(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (x <= 0) return fp[0]!;
  if (x >= last) return fp[last]!;
  const j = Math.floor(x);
  if (j === x) return fp[j]!;
  return (fp[j + 1]! - fp[j]!) * (x - j) + fp[j]!;
}
