import type { NoiseGenerator } from './types.js';

/**
 * torch's CPU generator: `torch.Generator('cpu').manual_seed(seed)` followed by `torch.randn(...)`, value for value.
 *
 * What torch does (ATen MT19937RNGEngine.h, CPUGeneratorImpl.cpp, native/cpu/DistributionTemplates.h,
 * core/DistributionsHelper.h, core/TransformationHelper.h):
 * - manual_seed keeps the full 64-bit seed for `initial_seed()` but initialises the Mersenne Twister from its low
 *   32 bits only (`state[0] = seed & 0xffffffff`, Knuth's init_genrand), and clears the cached Box–Muller value.
 *   So seeds that differ only above bit 31 give the same CPU noise, exactly as in torch.
 * - float32 tensors of 16 or more contiguous elements: every element first gets a float uniform
 *   `(u32 & 0xffffff) · 2^-24`, then each full block of 16 is turned into normals by Box–Muller pairing element j with
 *   element j+8 (cos half, sin half). When the count is not a multiple of 16, 16 fresh uniforms overwrite the last 16
 *   slots and that block is transformed again.
 * - fewer than 16 elements: element by element, double-precision Box–Muller on 53-bit uniforms built from two u32
 *   draws (`hi << 32 | lo`, low 53 bits · 2^-53); the sine half is cached in the generator and returned by the
 *   next scalar draw, even one in a later `randn` call (the vectorised path neither reads nor clears it).
 *
 * The ≥16 path reproduces torch's AVX2 kernel bit for bit (see boxMuller16); the scalar path uses V8's double libm
 * where torch uses the C library's, which can differ in the last bit.
 */
const STATE_SIZE = 624;
const SHIFT_SIZE = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

const TWO_POW_MINUS_24 = 1 / 16777216;
const TWO_POW_MINUS_53 = 1 / 9007199254740992;
const TWO_POW_32 = 4294967296;
const TWO_PI = 2 * Math.PI;

/** The Mersenne Twister exactly as torch's at::mt19937 (32-bit output, init_genrand seeding). */
export class MersenneTwister {
  private readonly state = new Uint32Array(STATE_SIZE);
  private next = 0;
  private left = 1;

  constructor(seedLow32: number) {
    const state = this.state;
    state[0] = seedLow32 >>> 0;
    for (let j = 1; j < STATE_SIZE; j++) {
      const previous = state[j - 1]!;
      state[j] = (Math.imul(1812433253, previous ^ (previous >>> 30)) + j) >>> 0;
    }
    this.left = 1;
    this.next = 0;
  }

  /** The next tempered 32-bit output, as an unsigned number. */
  nextUint32(): number {
    if (--this.left === 0) this.twist();
    let y = this.state[this.next++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const state = this.state;
    let k = 0;
    for (; k < STATE_SIZE - SHIFT_SIZE; k++) {
      const y = (state[k]! & UPPER_MASK) | (state[k + 1]! & LOWER_MASK);
      state[k] = state[k + SHIFT_SIZE]! ^ (y >>> 1) ^ (state[k + 1]! & 1 ? MATRIX_A : 0);
    }
    for (; k < STATE_SIZE - 1; k++) {
      const y = (state[k]! & UPPER_MASK) | (state[k + 1]! & LOWER_MASK);
      state[k] = state[k + SHIFT_SIZE - STATE_SIZE]! ^ (y >>> 1) ^ (state[k + 1]! & 1 ? MATRIX_A : 0);
    }
    const y = (state[STATE_SIZE - 1]! & UPPER_MASK) | (state[0]! & LOWER_MASK);
    state[STATE_SIZE - 1] = state[SHIFT_SIZE - 1]! ^ (y >>> 1) ^ (state[0]! & 1 ? MATRIX_A : 0);
    this.left = STATE_SIZE;
    this.next = 0;
  }
}

export class TorchCpuGenerator implements NoiseGenerator {
  readonly device = 'cpu' as const;
  private readonly engine: MersenneTwister;
  /** torch's `next_double_normal_sample`: the sine half of the last scalar Box–Muller pair, if not yet used. */
  private cachedNormal: number | null = null;

  constructor(readonly seed: bigint) {
    this.engine = new MersenneTwister(Number(seed & 0xffffffffn));
  }

  randn(count: number): Float32Array {
    return this.randnInto(new Float32Array(count));
  }

  randnInto(target: Float32Array): Float32Array {
    const count = target.length;
    if (count >= 16) this.fillVectorised(target);
    else for (let i = 0; i < count; i++) target[i] = this.scalarNormal();
    return target;
  }

  /** torch's `normal_fill`: uniforms for every slot, Box–Muller per 16-block, tail block redrawn. */
  private fillVectorised(data: Float32Array): void {
    const count = data.length;
    const engine = this.engine;
    for (let i = 0; i < count; i++) data[i] = (engine.nextUint32() & 0xffffff) * TWO_POW_MINUS_24;
    for (let start = 0; start + 16 <= count; start += 16) boxMuller16(data, start);
    if (count % 16 !== 0) {
      const start = count - 16;
      for (let i = start; i < count; i++) data[i] = (engine.nextUint32() & 0xffffff) * TWO_POW_MINUS_24;
      boxMuller16(data, start);
    }
  }

  /** torch's `normal_distribution<double>` on the CPU generator, returned as float32 by the caller's store. */
  private scalarNormal(): number {
    if (this.cachedNormal !== null) {
      const cached = this.cachedNormal;
      this.cachedNormal = null;
      return cached;
    }
    const u1 = this.uniform53();
    const u2 = this.uniform53();
    const radius = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = TWO_PI * u1;
    this.cachedNormal = radius * Math.sin(theta);
    return radius * Math.cos(theta);
  }

  /** `uniform_real_distribution<double>(0, 1)`: the low 53 bits of `random64()` (first draw high) · 2^-53. */
  private uniform53(): number {
    const high = this.engine.nextUint32();
    const low = this.engine.nextUint32();
    return ((high & 0x1fffff) * TWO_POW_32 + low) * TWO_POW_MINUS_53;
  }
}

/*
 * torch's x86 builds run `normal_fill_16_AVX2`, whose log and sin/cos are the cephes single-precision polynomials
 * of avx_mathfun.h, compiled with FMA contraction. Emulating them operation by operation in float32 (Math.fround;
 * a fused a·b + c is exact in double before its one rounding) reproduces torch's CPU noise bit for bit on every
 * value of the reference streams, and is faster than three libm calls. Non-AVX2 torch builds (ARM) use libm
 * instead and differ from this in the last bit only.
 */
const fround = Math.fround;
const SQRT_HALF = fround(0.707106781186547524);
const LOG_P0 = fround(7.0376836292e-2);
const LOG_P1 = fround(-1.151461031e-1);
const LOG_P2 = fround(1.167699874e-1);
const LOG_P3 = fround(-1.2420140846e-1);
const LOG_P4 = fround(1.4249322787e-1);
const LOG_P5 = fround(-1.6668057665e-1);
const LOG_P6 = fround(2.0000714765e-1);
const LOG_P7 = fround(-2.4999993993e-1);
const LOG_P8 = fround(3.3333331174e-1);
const LOG_Q1 = fround(-2.1219444e-4);
const LOG_Q2 = fround(0.693359375);
const FOUR_OVER_PI = fround(1.27323954473516);
const MINUS_DP1 = fround(-0.78515625);
const MINUS_DP2 = fround(-2.4187564849853515625e-4);
const MINUS_DP3 = fround(-3.77489497744594108e-8);
const SIN_P0 = fround(-1.9515295891e-4);
const SIN_P1 = fround(8.3321608736e-3);
const SIN_P2 = fround(-1.6666654611e-1);
const COS_P0 = fround(2.443315711809948e-5);
const COS_P1 = fround(-1.388731625493765e-3);
const COS_P2 = fround(4.166664568298827e-2);
const TWO_PI_FLOAT = fround(2 * Math.PI);
const TWO_POW_24 = 16777216;
/** 2^(−1−b): scales a whole number whose top bit is b into [0.5, 1). */
const MANTISSA_SCALE = Float64Array.from({ length: 32 }, (_, b) => 2 ** (-1 - b));

/**
 * cephes logf of `count · 2^-24` (count a whole number in 1 … 2^24, which is what 1 − uniform is), in float32.
 * Writing the argument as mantissa · 2^e with the mantissa in [0.5, 1) needs only the count's top bit.
 */
function logOfCount(count: number): number {
  const topBit = 31 - Math.clz32(count);
  let exponent = topBit - 23;
  let x = count * MANTISSA_SCALE[topBit]!; // count · 2^-24 scaled into [0.5, 1), exact
  if (x < SQRT_HALF) {
    exponent -= 1;
    x = fround(fround(x - 1) + x);
  } else {
    x = fround(x - 1);
  }
  const z = fround(x * x);
  let y = fround(LOG_P0 * x + LOG_P1);
  y = fround(y * x + LOG_P2);
  y = fround(y * x + LOG_P3);
  y = fround(y * x + LOG_P4);
  y = fround(y * x + LOG_P5);
  y = fround(y * x + LOG_P6);
  y = fround(y * x + LOG_P7);
  y = fround(y * x + LOG_P8);
  y = fround(y * x);
  y = fround(y * z + fround(exponent * LOG_Q1));
  y = fround(y - z * 0.5);
  return fround(exponent * LOG_Q2 + fround(x + y));
}

/** torch's `normal_fill_16` (AVX2 build) on float32 uniforms: element j (cosine half) pairs with j+8 (sine half). */
function boxMuller16(data: Float32Array, start: number): void {
  for (let j = start; j < start + 8; j++) {
    const radius = fround(Math.sqrt(-2 * logOfCount(TWO_POW_24 - data[j]! * TWO_POW_24)));
    const theta = fround(TWO_PI_FLOAT * data[j + 8]!); // in [0, 2π): no sign to handle
    // cephes sincosf: reduce by the octant j8 (rounded up to even) with extended-precision π/4.
    let octant = Math.trunc(fround(theta * FOUR_OVER_PI));
    octant = (octant + 1) & ~1;
    const y = octant;
    let x = fround(y * MINUS_DP1 + theta);
    x = fround(y * MINUS_DP2 + x);
    x = fround(y * MINUS_DP3 + x);
    const z = fround(x * x);
    let cosPoly = fround(COS_P0 * z + COS_P1);
    cosPoly = fround(cosPoly * z + COS_P2);
    cosPoly = fround(cosPoly * z);
    cosPoly = fround(fround(cosPoly * z - fround(z * 0.5)) + 1);
    let sinPoly = fround(SIN_P0 * z + SIN_P1);
    sinPoly = fround(sinPoly * z + SIN_P2);
    sinPoly = fround(sinPoly * z);
    sinPoly = fround(sinPoly * x + x);
    const firstPolynomialIsSine = (octant & 2) === 0;
    let sine = firstPolynomialIsSine ? sinPoly : cosPoly;
    let cosine = firstPolynomialIsSine ? cosPoly : sinPoly;
    if ((octant & 4) !== 0) sine = -sine;
    if ((~(octant - 2) & 4) !== 0) cosine = -cosine;
    data[j] = radius * cosine;
    data[j + 8] = radius * sine;
  }
}
