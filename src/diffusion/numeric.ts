/**
 * numpy's `np.round` / torch's `round()` (round half to even) on a double. The schedulers use it for timestep
 * lists and the decoder for `(x * 255).round()`, so both sides of diffusers' arithmetic share one definition.
 */
export function roundHalfEven(value: number): number {
  const rounded = Math.round(value);
  return rounded - value === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}
