/**
 * IEEE 754 binary16 ("half", fp16) ⇄ binary32 conversion for tensors that cross between models of different dtypes
 * (an fp32 text encoder feeding an fp16 UNet is common) and for fp16 model outputs the scheduler reads as float32.
 *
 * Halves are raw bit patterns in a Uint16Array, which is what onnxruntime-node takes and returns for `float16`
 * tensors (Node 20 has no Float16Array).
 *
 * Both directions work on bit patterns only (Uint32Array views of the Float32Arrays), never on JS numbers, so NaN
 * payloads survive exactly: a float32 read into a JS double and written back may have its NaN bits changed by the
 * engine, which would break the exact half → float → half round trip.
 *
 * The `…Into` functions write into caller-owned buffers and allocate nothing (a typed-array view of each buffer is
 * made once and cached), so a denoising loop can convert every step without garbage.
 */

/** float32 bit pattern for each of the 65536 halves; built on first use (256 KiB). */
let halfToFloatBits: Uint32Array | undefined;

function buildHalfToFloatTable(): Uint32Array {
  const table = new Uint32Array(65536);
  for (let half = 0; half < 65536; half++) table[half] = halfBitsToFloatBits(half);
  return table;
}

/** Exact widening of one half bit pattern to a float32 bit pattern (every half is representable in float32). */
function halfBitsToFloatBits(half: number): number {
  const sign = (half & 0x8000) << 16;
  const exponent = (half >>> 10) & 0x1f;
  let mantissa = half & 0x3ff;
  if (exponent === 0x1f) {
    // ±Inf (mantissa 0) or NaN: keep the payload in the top mantissa bits so the way back restores it exactly.
    return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  }
  if (exponent !== 0) {
    // Normal: rebias the exponent from 15 to 127.
    return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
  }
  if (mantissa === 0) return sign >>> 0; // ±0
  // Subnormal half (mantissa · 2^-24): normalise it, since every such value is a normal float32.
  let floatExponent = 113; // 2^-14 in float32's bias, lowered once per shift below
  while ((mantissa & 0x400) === 0) {
    mantissa <<= 1;
    floatExponent--;
  }
  return (sign | (floatExponent << 23) | ((mantissa & 0x3ff) << 13)) >>> 0;
}

/**
 * Narrows one float32 bit pattern to the nearest half, ties to even (IEEE's default rounding, the same as numpy's
 * `astype(float16)` and torch's `.half()`). Finite values too large for a half become ±Inf; values below half the
 * smallest subnormal become ±0; NaN stays NaN (payload truncated, kept non-zero so it cannot turn into Inf).
 */
export function floatBitsToHalfBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) {
    if (mantissa === 0) return sign | 0x7c00;
    const payload = mantissa >>> 13;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  if (exponent >= 113) {
    // Normal range of a half (unbiased exponent ≥ -14). Exponent > 142 overflows; the rounding carry may also
    // overflow 65504 + ε into the exponent field, which correctly yields Inf (0x7c00).
    if (exponent > 142) return sign | 0x7c00;
    let half = ((exponent - 112) << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1) !== 0)) half++;
    return sign | half;
  }
  if (exponent >= 102) {
    // Result is a half subnormal (value = m · 2^-24): shift the full 24-bit significand into place and round.
    const significand = mantissa | 0x800000;
    const shift = 126 - exponent; // 14 … 24
    let half = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) !== 0)) half++;
    return sign | half;
  }
  return sign; // too small: ±0
}

/** float32 value of each of the 65536 halves (NaN payloads not kept: for arithmetic, not for round trips). */
let halfValues: Float32Array | undefined;

/** The value table for arithmetic straight on halves (e.g. guidance on an fp16 UNet output), built on first use. */
export function halfToFloatValues(): Float32Array {
  halfToFloatBits ??= buildHalfToFloatTable();
  return (halfValues ??= new Float32Array(halfToFloatBits.buffer.slice(0)));
}

/** One half bit pattern → the JS number it stands for. */
export function halfBitsToNumber(half: number): number {
  halfToFloatBits ??= buildHalfToFloatTable();
  scratchBits[0] = halfToFloatBits[half & 0xffff]!;
  return scratchFloat[0]!;
}

/** One JS number → the nearest half bit pattern (rounded to float32 first, as the tensors we convert are float32). */
export function numberToHalfBits(value: number): number {
  scratchFloat[0] = value;
  return floatBitsToHalfBits(scratchBits[0]!);
}

const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/** Cached Uint32Array views over Float32Arrays, so repeated conversions of the same buffer allocate nothing. */
const bitViews = new WeakMap<Float32Array, Uint32Array>();

function bitsOf(floats: Float32Array): Uint32Array {
  let view = bitViews.get(floats);
  if (view === undefined) {
    view = new Uint32Array(floats.buffer, floats.byteOffset, floats.length);
    bitViews.set(floats, view);
  }
  return view;
}

function checkLengths(what: string, sourceLength: number, destinationLength: number): void {
  if (destinationLength < sourceLength) {
    throw new RangeError(`${what}: destination holds ${destinationLength} values, source has ${sourceLength}`);
  }
}

/** float32 → float16 into `destination` (at least as long as `source`). Returns `destination`. */
export function toFloat16Into(source: Float32Array, destination: Uint16Array): Uint16Array {
  checkLengths('toFloat16Into', source.length, destination.length);
  const bits = bitsOf(source);
  const count = bits.length;
  for (let i = 0; i < count; i++) {
    const x = bits[i]!;
    const magnitude = x & 0x7fffffff;
    // Fast path, branch-free rounding: float32 exponents 113…142 (the half's normal range). Rebias the exponent by
    // subtracting 112 << 23, add 0xfff plus the lowest kept bit (round half to even), shift the mantissa down; a
    // rounding carry moves into the exponent, and past 65504 into Inf (0x7c00), exactly as IEEE rounding requires.
    if (((magnitude - 0x38800000) >>> 0) < 0x0f000000) {
      destination[i] = ((x >>> 16) & 0x8000) | ((magnitude - 0x38000000 + 0xfff + ((magnitude >>> 13) & 1)) >>> 13);
    } else {
      destination[i] = floatBitsToHalfBits(x);
    }
  }
  return destination;
}

/** float16 → float32 into `destination` (at least as long as `source`). Exact. Returns `destination`. */
export function toFloat32Into(source: Uint16Array, destination: Float32Array): Float32Array {
  checkLengths('toFloat32Into', source.length, destination.length);
  const table = (halfToFloatBits ??= buildHalfToFloatTable());
  const bits = bitsOf(destination);
  const count = source.length;
  for (let i = 0; i < count; i++) bits[i] = table[source[i]!]!;
  return destination;
}

/** Allocating convenience for one-off conversions (outside the denoising loop). */
export function toFloat16(source: Float32Array): Uint16Array {
  return toFloat16Into(source, new Uint16Array(source.length));
}

/** Allocating convenience for one-off conversions (outside the denoising loop). */
export function toFloat32(source: Uint16Array): Float32Array {
  return toFloat32Into(source, new Float32Array(source.length));
}
