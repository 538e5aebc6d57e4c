import type { NoiseGenerator } from './types.js';

/**
 * torch's CUDA generator: `torch.Generator('cuda').manual_seed(seed)` followed by `torch.randn(..., device='cuda')`,
 * reproduced on the CPU.
 *
 * What torch does (ATen native/cuda/DistributionTemplates.h, CUDAGeneratorImpl, curand_kernel.h):
 * - The generator is a seed plus a Philox "offset" that starts at 0 after manual_seed. Each randn launches a
 *   grid-stride kernel of 256-thread blocks, `min(ceil(numel/256), SMs · floor(maxThreadsPerSM/256))` blocks. Thread
 *   `idx` does `curand_init(seed, subsequence = idx, offset)` and calls `curand_normal4` once per loop round; round k
 *   of thread idx fills elements `k·4T + ii·T + idx` (T = total threads, ii = 0..3 the float4 lane). While the tensor
 *   fits in the GPU's resident threads that is one element per thread, always lane 0.
 * - After the launch the offset grows by `((numel − 1) / (4T) + 1) · 4` (the most curand outputs a thread used), so
 *   the next randn call starts on fresh counters: that is how the stream "continues".
 * - Philox4x32-10: counter = (offset/4 + k as 64 bits, idx as 64 bits), key = (seed low 32, seed high 32).
 *   curand_normal4 does Box–Muller on output pairs (x, y) and (z, w) in float32:
 *   u = x·2^-32 + 2^-33, v = y·2π·2^-32 + π·2^-32, lanes sin(v)·√(−2 ln u) then cos(v)·√(−2 ln u).
 *
 * `maxResidentThreads` is the GPU's SMs × floor(maxThreadsPerSM / 256) × 256 (H100: 132 × 8 × 256 = 270336;
 * RTX 3060: 28 × 6 × 256 = 43008). Only tensors larger than that depend on it, and then torch's own CUDA noise differs
 * between GPU models. The default is a GPU large enough for one element per thread, which every GPU gives for one
 * 512² image (16384 values); a batch of 4 at 512² (65536) already exceeds a small GPU's count.
 *
 * Accuracy: curand's Box–Muller takes sin/cos from `__sincosf`, the GPU's hardware approximation (absolute error
 * ≈ 2^-21), which cannot be reproduced exactly; exact sin/cos here keep every value within ≈ 2e-6 of torch's.
 */
const BLOCK_SIZE = 256;
const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
const M0_HIGH = PHILOX_M0 >>> 16;
const M0_LOW = PHILOX_M0 & 0xffff;
const M1_HIGH = PHILOX_M1 >>> 16;
const M1_LOW = PHILOX_M1 & 0xffff;
const TWO_POW_32 = 4294967296;

const fround = Math.fround;
/** curand's CURAND_2POW32_INV (2.3283064e-10f, exactly 2^-32 as a float). */
const INV_2POW32 = fround(2.3283064e-10);
const HALF_INV_2POW32 = fround(INV_2POW32 / 2);
/** curand's CURAND_2POW32_INV_2PI: the float product 2^-32 · 6.2831855f. */
const INV_2POW32_2PI = fround(INV_2POW32 * fround(6.2831855));
const HALF_INV_2POW32_2PI = fround(INV_2POW32_2PI / 2);

/**
 * High 32 bits of the 64-bit product of `a` (u32) and a constant given as 16-bit halves, exactly and without BigInt:
 * schoolbook multiplication on 16-bit limbs, every partial product below 2^32 so doubles hold it exactly.
 */
function mulHigh(a: number, constantHigh: number, constantLow: number): number {
  const aHigh = a >>> 16;
  const aLow = a & 0xffff;
  const lowLow = aLow * constantLow;
  const lowHigh = aLow * constantHigh;
  const highLow = aHigh * constantLow;
  const carry = (lowLow >>> 16) + (lowHigh & 0xffff) + (highLow & 0xffff);
  // `| 0` keeps every word an int32 (same bits as the u32) so V8 stays on integer registers.
  return (aHigh * constantHigh + (lowHigh >>> 16) + (highLow >>> 16) + (carry >>> 16)) | 0;
}

export interface TorchCudaGeneratorOptions {
  /** SMs × floor(maxThreadsPerMultiProcessor / 256) × 256 of the GPU being imitated; see the file comment. */
  maxResidentThreads?: number;
}

export class TorchCudaGenerator implements NoiseGenerator {
  readonly device = 'cuda' as const;
  private readonly keyLow: number;
  private readonly keyHigh: number;
  private readonly maxBlocks: number;
  /** torch's philox_offset_per_thread, in curand outputs (always a multiple of 4). */
  private offset = 0;

  constructor(readonly seed: bigint, options: TorchCudaGeneratorOptions = {}) {
    this.keyLow = Number(seed & 0xffffffffn);
    this.keyHigh = Number((seed >> 32n) & 0xffffffffn);
    const maxThreads = options.maxResidentThreads ?? Number.POSITIVE_INFINITY;
    this.maxBlocks = Math.max(1, Math.floor(maxThreads / BLOCK_SIZE));
  }

  randn(count: number): Float32Array {
    return this.randnInto(new Float32Array(count));
  }

  randnInto(target: Float32Array): Float32Array {
    const count = target.length;
    if (count === 0) return target;
    const blocks = Math.min(Math.ceil(count / BLOCK_SIZE), this.maxBlocks);
    const threads = blocks * BLOCK_SIZE;
    const perRound = threads * 4;
    const baseCounter = this.offset / 4;
    const { keyLow, keyHigh } = this;
    // One loop with Philox and Box–Muller written inline: V8 then keeps every 32-bit word unboxed in registers
    // (a call boundary would box words ≥ 2^30 as heap numbers, several times slower). When every element has its own
    // thread (the usual case) the element index is the subsequence, the round is 0 and the lane is 0.
    const oneElementPerThread = count <= threads;
    for (let index = 0; index < count; index++) {
      let lane = 0;
      let thread = index;
      let counter = baseCounter;
      if (!oneElementPerThread) {
        const round = Math.floor(index / perRound);
        const withinRound = index - round * perRound;
        lane = Math.floor(withinRound / threads);
        thread = withinRound - lane * threads;
        counter = baseCounter + round;
      }
      // Counter words: (position low, position high, subsequence low, subsequence high); key: the seed's halves.
      let c0 = counter | 0;
      let c1 = Math.floor(counter / TWO_POW_32) | 0;
      let c2 = thread | 0;
      let c3 = Math.floor(thread / TWO_POW_32) | 0;
      let k0 = keyLow | 0;
      let k1 = keyHigh | 0;
      for (let r = 0; r < 10; r++) {
        const high0 = mulHigh(c0, M0_HIGH, M0_LOW);
        const low0 = Math.imul(c0, PHILOX_M0);
        const high1 = mulHigh(c2, M1_HIGH, M1_LOW);
        const low1 = Math.imul(c2, PHILOX_M1);
        c0 = high1 ^ c1 ^ k0;
        c1 = low1;
        c2 = high0 ^ c3 ^ k1;
        c3 = low0;
        k0 = (k0 + PHILOX_W0) | 0;
        k1 = (k1 + PHILOX_W1) | 0;
      }
      // curand_normal4: lanes 0/1 come from the pair (x, y), lanes 2/3 from (z, w); even lanes take the sine.
      const x = (lane < 2 ? c0 : c2) >>> 0;
      const y = (lane < 2 ? c1 : c3) >>> 0;
      const u = fround(fround(fround(x) * INV_2POW32) + HALF_INV_2POW32);
      const v = fround(fround(fround(y) * INV_2POW32_2PI) + HALF_INV_2POW32_2PI);
      const radius = fround(Math.sqrt(fround(-2 * fround(Math.log(u)))));
      const trig = fround((lane & 1) === 0 ? Math.sin(v) : Math.cos(v));
      target[index] = trig * radius;
    }
    this.offset += (Math.floor((count - 1) / perRound) + 1) * 4;
    return target;
  }
}
