import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InvalidRequestError } from '../../src/diffusion/errors.js';
import { createNoiseGenerator, MAX_SEED, MersenneTwister, parseRngDevice, parseSeed, randomSeed, TorchCudaGenerator } from '../../src/diffusion/rng/index.js';
import type { RngDevice } from '../../src/diffusion/rng/types.js';

/** One entry of torch-randn.json: torch.Generator(device).manual_seed(seed); randn(shape); then randn(4, 7). */
interface RandnReference {
  device: RngDevice;
  seed: number;
  shape: number[];
  values?: number[];
  first64?: number[];
  last64?: number[];
  sum?: number;
  then_4x7: number[];
}

const referencePath = fileURLToPath(new URL('../fixtures/reference/torch-randn.json', import.meta.url));
const references = JSON.parse(readFileSync(referencePath, 'utf8')) as RandnReference[];
const TOLERANCE = 1e-5;

function assertClose(actual: ArrayLike<number>, expected: readonly number[], offset: number, what: string): void {
  for (let i = 0; i < expected.length; i++) {
    const got = actual[offset + i]!;
    const want = expected[i]!;
    assert.ok(Math.abs(got - want) <= TOLERANCE, `${what}[${offset + i}]: got ${got}, torch gives ${want}`);
  }
}

describe('torch-identical noise: every stream in torch-randn.json', () => {
  assert.ok(references.length >= 72, 'the reference file holds every device × seed × shape');
  for (const reference of references) {
    const name = `${reference.device} seed ${reference.seed} shape [${reference.shape.join(', ')}]`;
    it(name, () => {
      const count = reference.shape.reduce((a, b) => a * b, 1);
      const generator = createNoiseGenerator(reference.device, BigInt(reference.seed));
      const values = generator.randn(count);
      assert.equal(values.length, count);
      if (reference.values) {
        assert.equal(reference.values.length, count);
        assertClose(values, reference.values, 0, 'values');
      } else {
        assertClose(values, reference.first64!, 0, 'values');
        assertClose(values, reference.last64!, count - 64, 'values');
        let sum = 0;
        for (const value of values) sum += value;
        // 16384 float32 values summed: rounding alone is around 1e-4, so this checks the middle is not garbage.
        assert.ok(Math.abs(sum - reference.sum!) < 1e-2, `sum ${sum} vs torch ${reference.sum}`);
      }
      // The stream continues: the next randn((4, 7)) matches torch's second call on the same generator.
      assertClose(generator.randn(28), reference.then_4x7, 0, 'then_4x7');
    });
  }
});

describe('noise generators', () => {
  it('the CPU generator is bit-identical to torch on every reference value (AVX2 kernel emulated exactly)', () => {
    let compared = 0;
    for (const reference of references.filter((r) => r.device === 'cpu')) {
      const count = reference.shape.reduce((a, b) => a * b, 1);
      const values = createNoiseGenerator('cpu', BigInt(reference.seed)).randn(count);
      const expected: [number, number][] = reference.values
        ? reference.values.map((v, i) => [i, v])
        : [...reference.first64!.map((v, i): [number, number] => [i, v]), ...reference.last64!.map((v, i): [number, number] => [count - 64 + i, v])];
      for (const [index, value] of expected) {
        assert.equal(values[index], Math.fround(value), `seed ${reference.seed} [${reference.shape.join(', ')}] value ${index}`);
        compared++;
      }
    }
    assert.ok(compared > 8000);
  });

  it('randnInto writes the same stream as randn, in place', () => {
    for (const device of ['cpu', 'cuda'] as const) {
      const a = createNoiseGenerator(device, 1234n);
      const b = createNoiseGenerator(device, 1234n);
      const fromRandn = [a.randn(64), a.randn(5), a.randn(33)];
      const targets = [new Float32Array(64), new Float32Array(5), new Float32Array(33)];
      for (const target of targets) assert.equal(b.randnInto(target), target);
      assert.deepEqual(targets, fromRandn);
    }
  });

  it('CUDA tensors larger than the GPU’s resident threads use the grid-stride layout and offset torch uses', () => {
    // Imitating a GPU with one 256-thread block resident: 2048 values take 2 rounds of 4 lanes per thread, so the
    // first 256 values are lane 0 of round 0 (the same as with one thread per element) and the offset advances by
    // 2 counters (8), as two one-round calls would.
    const small = new TorchCudaGenerator(99n, { maxResidentThreads: 256 });
    const wide = createNoiseGenerator('cuda', 99n);
    const strided = small.randn(2048);
    assert.deepEqual(strided.subarray(0, 256), wide.randn(256));
    assert.notDeepEqual(strided.subarray(256, 512), strided.subarray(0, 256));
    wide.randn(1);
    assert.deepEqual(small.randn(28), wide.randn(28));
  });

  it('the CPU generator uses the low 32 bits of a 64-bit seed, the CUDA one all 64', () => {
    const high = (1n << 40n) + 7n;
    assert.deepEqual(createNoiseGenerator('cpu', high).randn(20), createNoiseGenerator('cpu', 7n).randn(20));
    assert.notDeepEqual(createNoiseGenerator('cuda', high).randn(20), createNoiseGenerator('cuda', 7n).randn(20));
    assert.equal(createNoiseGenerator('cuda', MAX_SEED).randn(16).every(Number.isFinite), true);
  });

  it('the scalar path caches the second Box–Muller value across calls, as torch does', () => {
    // torch: randn(1) twice after manual_seed(0) gives the cosine and then the cached sine of one pair, which are
    // the first two values of randn(5) (same pairing).
    const reference = references.find((r) => r.device === 'cpu' && r.seed === 0 && r.shape.length === 1 && r.shape[0] === 5)!;
    const generator = createNoiseGenerator('cpu', 0n);
    const first = generator.randn(1)[0]!;
    const second = generator.randn(1)[0]!;
    assert.ok(Math.abs(first - reference.values![0]!) < TOLERANCE);
    assert.ok(Math.abs(second - reference.values![1]!) < TOLERANCE);
  });

  it('the Mersenne Twister matches the reference MT19937 output for seed 5489', () => {
    // The 10000th output of the standard MT19937 (C++ std::mt19937 with its default seed 5489) is 4123659995.
    const engine = new MersenneTwister(5489);
    let value = 0;
    for (let i = 0; i < 10000; i++) value = engine.nextUint32();
    assert.equal(value, 4123659995);
  });

  it('rejects seeds outside 0 … 2^64−1 with a user-facing error', () => {
    assert.throws(() => createNoiseGenerator('cpu', -1n), InvalidRequestError);
    assert.throws(() => createNoiseGenerator('cuda', MAX_SEED + 1n), InvalidRequestError);
    assert.throws(() => createNoiseGenerator('gpu' as RngDevice, 1n), InvalidRequestError);
  });
});

describe('parseSeed / randomSeed / parseRngDevice', () => {
  it('accepts decimal seeds up to 2^64−1', () => {
    assert.equal(parseSeed('0'), 0n);
    assert.equal(parseSeed(' 1055747 '), 1055747n);
    assert.equal(parseSeed('18446744073709551615'), MAX_SEED);
  });

  it('rejects everything else with a one-line message', () => {
    for (const text of ['', '-1', '1.5', '1e3', '0x10', 'abc', '18446744073709551616']) {
      assert.throws(
        () => parseSeed(text),
        (error: unknown) => error instanceof InvalidRequestError && !error.message.includes('\n') && error.message.length > 0,
        text,
      );
    }
  });

  it('random seeds are in the typeable 32-bit range and differ', () => {
    const seeds = new Set<bigint>();
    for (let i = 0; i < 20; i++) {
      const seed = randomSeed();
      assert.ok(seed >= 0n && seed < 1n << 32n);
      seeds.add(seed);
    }
    assert.ok(seeds.size > 1);
  });

  it('parses noise source names', () => {
    assert.equal(parseRngDevice('cpu'), 'cpu');
    assert.equal(parseRngDevice('CUDA'), 'cuda');
    assert.throws(() => parseRngDevice('nv'), /cpu, cuda/);
  });
});
