import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  floatBitsToHalfBits,
  halfBitsToNumber,
  numberToHalfBits,
  toFloat16,
  toFloat16Into,
  toFloat32,
  toFloat32Into,
} from '../../src/diffusion/fp16.js';

/** The value a half bit pattern stands for, from the IEEE 754 definition (independent of the code under test). */
function referenceHalfValue(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exponent = (half >>> 10) & 0x1f;
  const mantissa = half & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function floatBits(value: number): number {
  return new Uint32Array(new Float32Array([value]).buffer)[0]!;
}

function bitsToFloat(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}

/**
 * Nearest half by search over all non-negative finite halves (ties to the even bit pattern), the way the IEEE
 * standard defines rounding; a plain oracle, slow but obviously right.
 */
const positiveHalves = Array.from({ length: 0x7c00 }, (_, h) => referenceHalfValue(h));
function referenceNearestHalf(value: number): number {
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  // Largest half + half an ulp (2^15 · (2 - 2^-11)) and beyond round to infinity.
  if (magnitude >= 65520) return sign | 0x7c00;
  let low = 0;
  let high = positiveHalves.length - 1;
  while (high - low > 1) {
    const mid = (low + high) >> 1;
    if (positiveHalves[mid]! <= magnitude) low = mid;
    else high = mid;
  }
  const below = positiveHalves[low]!;
  const above = positiveHalves[high]!;
  let chosen: number;
  if (magnitude - below < above - magnitude) chosen = low;
  else if (magnitude - below > above - magnitude) chosen = high;
  else chosen = low % 2 === 0 ? low : high;
  if (magnitude === above) chosen = high;
  return sign | chosen;
}

test('every one of the 65536 halves widens to its IEEE value and narrows back to the same bits', () => {
  const halves = new Uint16Array(65536);
  for (let h = 0; h < 65536; h++) halves[h] = h;
  const floats = toFloat32(halves);
  const back = toFloat16(floats);
  let nanCount = 0;
  for (let h = 0; h < 65536; h++) {
    const expected = referenceHalfValue(h);
    if (Number.isNaN(expected)) {
      nanCount++;
      assert.ok(Number.isNaN(floats[h]), `half 0x${h.toString(16)} should widen to NaN`);
    } else {
      assert.ok(Object.is(floats[h], expected), `half 0x${h.toString(16)}: got ${floats[h]}, want ${expected}`);
    }
    // NaN payloads are carried in the bits, so even NaNs come back bit-identical.
    assert.equal(back[h], h, `half 0x${h.toString(16)} did not round-trip`);
  }
  assert.equal(nanCount, 2 * 1023);
});

test('known bit patterns: one, max, min normal, subnormals, signed zero', () => {
  const cases: Array<[number, number]> = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite half
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [0.333251953125, 0x3555], // 1/3 in half precision, exactly
    [0, 0x0000],
    [-0, 0x8000],
  ];
  for (const [value, bits] of cases) {
    assert.equal(numberToHalfBits(value), bits, `numberToHalfBits(${value})`);
    assert.ok(Object.is(halfBitsToNumber(bits), value), `halfBitsToNumber(0x${bits.toString(16)})`);
  }
  assert.equal(numberToHalfBits(1 / 3), 0x3555);
  assert.equal(numberToHalfBits(Math.PI), 0x4248);
});

test('infinities, NaN and overflow', () => {
  assert.equal(numberToHalfBits(Infinity), 0x7c00);
  assert.equal(numberToHalfBits(-Infinity), 0xfc00);
  assert.equal(numberToHalfBits(1e6), 0x7c00);
  assert.equal(numberToHalfBits(-3.4e38), 0xfc00);
  assert.equal(numberToHalfBits(65519.99), 0x7bff); // below the rounding midpoint: stays finite
  assert.equal(numberToHalfBits(65520), 0x7c00); // the midpoint ties to even, which is Inf
  assert.equal(halfBitsToNumber(0x7c00), Infinity);
  assert.equal(halfBitsToNumber(0xfc00), -Infinity);

  const nan = numberToHalfBits(NaN);
  assert.equal(nan & 0x7c00, 0x7c00);
  assert.notEqual(nan & 0x3ff, 0, 'NaN must not turn into Inf');
  assert.ok(Number.isNaN(halfBitsToNumber(nan)));
  // A float32 NaN whose payload lives only in the low 13 bits would lose it; it must still be a NaN half.
  assert.equal(floatBitsToHalfBits(0x7f800001) & 0x3ff, 0x200);
  assert.equal(floatBitsToHalfBits(0xff800001), 0xfe00);
});

test('rounding ties go to even, in the normal and the subnormal range', () => {
  // 1 + 2^-11 lies exactly between 0x3c00 (even) and 0x3c01: goes down. 1 + 3·2^-11 between 0x3c01 and 0x3c02: up.
  assert.equal(numberToHalfBits(1 + 2 ** -11), 0x3c00);
  assert.equal(numberToHalfBits(1 + 3 * 2 ** -11), 0x3c02);
  // Just above a tie rounds up, just below rounds down.
  assert.equal(floatBits(1 + 2 ** -11) + 1, floatBits(1 + 2 ** -11 + 2 ** -23));
  assert.equal(numberToHalfBits(1 + 2 ** -11 + 2 ** -23), 0x3c01);
  assert.equal(numberToHalfBits(1 + 2 ** -11 - 2 ** -23), 0x3c00);
  // Subnormal ties: 0.5·2^-24 → 0 (even), 1.5·2^-24 → 2·2^-24, 2.5·2^-24 → 2·2^-24.
  assert.equal(numberToHalfBits(0.5 * 2 ** -24), 0x0000);
  assert.equal(numberToHalfBits(-0.5 * 2 ** -24), 0x8000);
  assert.equal(numberToHalfBits(0.5000001 * 2 ** -24), 0x0001);
  assert.equal(numberToHalfBits(1.5 * 2 ** -24), 0x0002);
  assert.equal(numberToHalfBits(2.5 * 2 ** -24), 0x0002);
  // Largest subnormal + half an ulp ties up into the smallest normal (even mantissa 0, exponent carries).
  assert.equal(numberToHalfBits(1023.5 * 2 ** -24), 0x0400);
  // Values far below the smallest subnormal flush to signed zero; float32 subnormals too.
  assert.equal(numberToHalfBits(1e-10), 0x0000);
  assert.equal(floatBitsToHalfBits(0x80000001), 0x8000);
});

test('float32 → float16 agrees with a search over all halves for a wide sweep of float32 values', () => {
  // Deterministic sweep over float32 bit patterns: every exponent, pseudo-random mantissas, both signs.
  const values: number[] = [];
  let state = 12345;
  for (let exponent = 90; exponent <= 150; exponent++) {
    for (let k = 0; k < 200; k++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      const sign = k & 1 ? 0x80000000 : 0;
      values.push(bitsToFloat((sign | (exponent << 23) | (state & 0x7fffff)) >>> 0));
    }
    // The exact midpoints between neighbouring halves of this binade, where rounding direction matters most.
    for (let m = 0; m < 8; m++) values.push(bitsToFloat(((exponent << 23) | (m << 13) | 0x1000) >>> 0));
  }
  const source = Float32Array.from(values);
  const converted = toFloat16(source);
  for (let i = 0; i < source.length; i++) {
    const expected = referenceNearestHalf(source[i]!);
    assert.equal(converted[i], expected, `float ${source[i]} (0x${floatBits(source[i]!).toString(16)})`);
  }
});

test('the Into variants write into the caller’s buffers and reject short destinations', () => {
  const source = new Float32Array([1, -2, 0.5, 65504]);
  const halves = new Uint16Array(6).fill(0xffff);
  assert.equal(toFloat16Into(source, halves), halves);
  assert.deepEqual([...halves], [0x3c00, 0xc000, 0x3800, 0x7bff, 0xffff, 0xffff]);

  const floats = new Float32Array(4);
  assert.equal(toFloat32Into(halves.subarray(0, 4), floats), floats);
  assert.deepEqual([...floats], [1, -2, 0.5, 65504]);

  // A view into the middle of a larger buffer converts only its own range.
  const backing = new Float32Array([9, 9, 1, 2, 9]);
  const window = backing.subarray(2, 4);
  assert.deepEqual([...toFloat16(window)], [0x3c00, 0x4000]);
  assert.deepEqual([...toFloat32Into(new Uint16Array([0x4200, 0x4400]), window)], [3, 4]);
  assert.deepEqual([...backing], [9, 9, 3, 4, 9]);

  assert.throws(() => toFloat16Into(source, new Uint16Array(3)), RangeError);
  assert.throws(() => toFloat32Into(halves, new Float32Array(2)), RangeError);
});
