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
 * libm vs V8 math (and torch's AVX2 sincos/log approximations) may differ in the last bit of a float; the results
 * agree with torch well within 1e-5.
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

/** torch's `normal_fill_16` on float32 data: pairs element j (cosine) with element j+8 (sine), j = 0..7. */
function boxMuller16(data: Float32Array, start: number): void {
  const fround = Math.fround;
  for (let j = start; j < start + 8; j++) {
    const u1 = 1 - data[j]!; // [0, 1) → (0, 1] for the log; exact in float32
    const u2 = data[j + 8]!;
    const radius = fround(Math.sqrt(fround(-2 * fround(Math.log(u1)))));
    const theta = fround(TWO_PI * u2);
    data[j] = radius * fround(Math.cos(theta));
    data[j + 8] = radius * fround(Math.sin(theta));
  }
}
