import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InvalidRequestError, ModelFileError } from '../../src/diffusion/errors.js';
import { createNoiseGenerator } from '../../src/diffusion/rng/index.js';
import {
  createScheduler,
  parseSchedulerName,
  parseTimestepSpacing,
  SCHEDULER_NAMES,
  schedulerDisplayName,
  schedulerNameForClass,
} from '../../src/diffusion/schedulers/index.js';
import type { SchedulerConfig, SchedulerName, SchedulerOptions } from '../../src/diffusion/schedulers/types.js';

interface TableEntry {
  timesteps: number[];
  sigmas?: number[];
  init_noise_sigma: number;
}
interface SchedulerReference {
  scheduler_config: SchedulerConfig;
  tables: Record<string, { class: string; overrides: Record<string, unknown> } & Record<string, TableEntry>>;
}

const referencePath = fileURLToPath(new URL('../fixtures/reference/schedulers.json', import.meta.url));
const reference = JSON.parse(readFileSync(referencePath, 'utf8')) as SchedulerReference;
/** SD 1.5's own scheduler_config.json (PNDM, scaled_linear 0.00085–0.012, steps_offset 1, skip_prk_steps). */
const SD15 = reference.scheduler_config;
const STEP_COUNTS = ['1', '2', '4', '10', '20', '25', '30', '50'];

/** How each reference table was built (diffusers class + overrides), in our terms. */
function ourChoice(table: { class: string; overrides: Record<string, unknown> }): { name: SchedulerName; options: SchedulerOptions } {
  const name = schedulerNameForClass(table.class);
  assert.ok(name, `we implement ${table.class}`);
  const options: SchedulerOptions = {};
  for (const [key, value] of Object.entries(table.overrides)) {
    if (key === 'use_karras_sigmas') options.karras = value as boolean;
    else if (key === 'timestep_spacing') options.timestepSpacing = value as SchedulerOptions['timestepSpacing'];
    else assert.fail(`unexpected override ${key}`);
  }
  return { name, options };
}

function assertAllClose(actual: ArrayLike<number>, expected: readonly number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance, `${what}[${i}]: got ${actual[i]}, diffusers has ${expected[i]}`);
  }
}

describe("scheduler tables match diffusers' (schedulers.json, within 1e-4)", () => {
  for (const [tableName, table] of Object.entries(reference.tables)) {
    it(tableName, () => {
      const { name, options } = ourChoice(table);
      for (const steps of STEP_COUNTS) {
        const expected = table[steps]!;
        const scheduler = createScheduler(name, SD15, options);
        scheduler.setTimesteps(Number(steps));
        assertAllClose(scheduler.timesteps, expected.timesteps, 1e-4, `${tableName} n=${steps} timesteps`);
        if (expected.sigmas) {
          assert.ok(scheduler.sigmas, `${tableName} has sigmas`);
          assertAllClose(scheduler.sigmas, expected.sigmas, 1e-4, `${tableName} n=${steps} sigmas`);
        } else {
          assert.equal(scheduler.sigmas, null);
        }
        assert.ok(Math.abs(scheduler.initNoiseSigma - expected.init_noise_sigma) <= 1e-4, `${tableName} n=${steps} init_noise_sigma`);
      }
    });
  }

  it("30 Euler steps: 999, 964.5517, 930.1035, …, 0 (the seed article's table)", () => {
    const scheduler = createScheduler('euler', SD15);
    scheduler.setTimesteps(30);
    assert.equal(scheduler.timesteps.length, 30);
    assert.equal(scheduler.timesteps[0], 999);
    assert.ok(Math.abs(scheduler.timesteps[1]! - 964.5517) < 1e-4);
    assert.ok(Math.abs(scheduler.timesteps[2]! - 930.1035) < 1e-4);
    assert.equal(scheduler.timesteps[29], 0);
  });
});

describe('createScheduler: from_config semantics', () => {
  it("with no name, builds the class the model's config names", () => {
    const scheduler = createScheduler(undefined, SD15);
    assert.equal(scheduler.name, 'pndm');
    assert.equal(scheduler.displayName, 'PLMS');
    const classes: Record<string, SchedulerName> = {
      PNDMScheduler: 'pndm',
      EulerDiscreteScheduler: 'euler',
      EulerAncestralDiscreteScheduler: 'euler_a',
      DDIMScheduler: 'ddim',
      DPMSolverMultistepScheduler: 'dpmpp_2m',
      LMSDiscreteScheduler: 'lms',
    };
    for (const [className, name] of Object.entries(classes)) {
      assert.equal(createScheduler(undefined, { ...SD15, _class_name: className }).name, name);
    }
  });

  it('rejects an unknown or missing class with a one-line error naming the config file', () => {
    assert.throws(
      () => createScheduler(undefined, { ...SD15, _class_name: 'UniPCMultistepScheduler' }),
      (error: unknown) => error instanceof ModelFileError && /UniPCMultistepScheduler/.test(error.message) && /scheduler_config\.json/.test(error.message),
    );
    const { _class_name: _, ...withoutClass } = SD15;
    assert.throws(() => createScheduler(undefined, withoutClass), ModelFileError);
    assert.throws(() => createScheduler('euler', { ...SD15, beta_schedule: 'sigmoid' }), ModelFileError);
  });

  it('config keys apply to whichever class is chosen; absent keys take that class’s defaults', () => {
    // SD 1.5's steps_offset 1 and set_alpha_to_one false reach DDIM (leading spacing by default): last timestep 1.
    const ddim = createScheduler('ddim', SD15);
    ddim.setTimesteps(4);
    assert.deepEqual(Array.from(ddim.timesteps), [751, 501, 251, 1]);
    // The same config read by Euler: its own default spacing (linspace) ignores steps_offset.
    const euler = createScheduler('euler', SD15);
    euler.setTimesteps(4);
    assert.deepEqual(Array.from(euler.timesteps), [999, 666, 333, 0]);
    // A config without steps_offset: DDIM's default 0.
    const { steps_offset: __, ...noOffset } = SD15;
    const ddimNoOffset = createScheduler('ddim', noOffset);
    ddimNoOffset.setTimesteps(4);
    assert.deepEqual(Array.from(ddimNoOffset.timesteps), [750, 500, 250, 0]);
  });

  it('ignores keys listed in _use_default_values, as diffusers does', () => {
    // A PNDM config re-saved by diffusers records its filled-in default "leading"; Euler must keep its linspace.
    const resaved: SchedulerConfig = { ...SD15, timestep_spacing: 'leading', _use_default_values: ['timestep_spacing'] };
    const euler = createScheduler('euler', resaved);
    euler.setTimesteps(4);
    assert.deepEqual(Array.from(euler.timesteps), [999, 666, 333, 0]);
    assert.equal(euler.timestepSpacing, 'linspace');
  });

  it('options override the config: timestep spacing on every scheduler, Karras where diffusers has it', () => {
    const spacings: Record<SchedulerName, Record<string, number[]>> = {
      // Independent values from numpy with diffusers' formulas, for 7 steps and SD 1.5's config.
      pndm: { linspace: [999, 832, 832, 666, 500, 333, 166, 0], trailing: [999, 856, 856, 713, 570, 428, 285, 142] },
      ddim: { linspace: [999, 832, 666, 500, 333, 166, 0] },
      dpmpp_2m: { leading: [876, 751, 626, 501, 376, 251, 126], trailing: [999, 856, 713, 570, 428, 285, 142] },
      euler: {},
      euler_a: {},
      lms: {},
    };
    for (const [name, bySpacing] of Object.entries(spacings) as [SchedulerName, Record<string, number[]>][]) {
      for (const [spacing, expected] of Object.entries(bySpacing)) {
        const scheduler = createScheduler(name, SD15, { timestepSpacing: parseTimestepSpacing(spacing) });
        scheduler.setTimesteps(7);
        assert.deepEqual(Array.from(scheduler.timesteps), expected, `${name} ${spacing}`);
        assert.equal(scheduler.timestepSpacing, spacing);
      }
    }
    // Leading spacing on Euler: init_noise_sigma becomes √(σ_max² + 1), as diffusers computes it.
    const leading = createScheduler('euler', SD15, { timestepSpacing: 'leading' });
    leading.setTimesteps(10);
    assert.deepEqual(Array.from(leading.timesteps), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    assert.ok(Math.abs(leading.initNoiseSigma - Math.sqrt(leading.sigmas![0]! ** 2 + 1)) < 1e-5);

    assert.equal(createScheduler('euler', SD15, { karras: true }).displayName, 'Euler Karras');
    assert.equal(createScheduler('dpmpp_2m', SD15, { karras: true }).displayName, 'DPM++ 2M Karras');
    assert.equal(createScheduler('dpmpp_2m', { ...SD15, use_karras_sigmas: true }).karras, true, 'Karras from the config');
    for (const name of ['pndm', 'ddim', 'euler_a'] as const) {
      assert.throws(() => createScheduler(name, SD15, { karras: true }), InvalidRequestError, name);
    }
  });

  it('Karras sigmas on Euler and LMS span the schedule with ρ = 7 and end at 0', () => {
    for (const name of ['euler', 'lms'] as const) {
      const scheduler = createScheduler(name, SD15, { karras: true });
      scheduler.setTimesteps(10);
      const sigmas = scheduler.sigmas!;
      assert.ok(Math.abs(sigmas[0]! - 14.614647) < 1e-5);
      assert.ok(Math.abs(sigmas[9]! - 0.0291675) < 1e-6);
      assert.equal(sigmas[10], 0);
      // ρ = 7: σ_i^(1/7) is linear in i.
      const roots = Array.from(sigmas.subarray(0, 10), (s) => s ** (1 / 7));
      for (let i = 1; i < 9; i++) assert.ok(Math.abs(roots[i + 1]! - 2 * roots[i]! + roots[i - 1]!) < 1e-5);
      assert.equal(scheduler.timesteps[0], 999);
    }
  });

  it('PNDM without skip_prk_steps runs three Runge–Kutta rounds first', () => {
    const scheduler = createScheduler('pndm', { ...SD15, skip_prk_steps: false });
    scheduler.setTimesteps(10);
    assert.equal(scheduler.displayName, 'PNDM');
    // numpy with diffusers' formulas: 12 PRK timesteps, then PLMS.
    assert.deepEqual(Array.from(scheduler.timesteps), [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
    const sample = new Float32Array([0.5, -1, 2, 0]);
    let latents: Float32Array = sample;
    for (const t of scheduler.timesteps) latents = scheduler.step(new Float32Array([0.1, 0.2, -0.3, 0.05]), t, latents);
    assert.ok(latents.every(Number.isFinite));
  });
});

describe('names', () => {
  it('parseSchedulerName accepts our names and explains itself otherwise', () => {
    for (const name of SCHEDULER_NAMES) assert.equal(parseSchedulerName(name), name);
    assert.equal(parseSchedulerName(' Euler-A '), 'euler_a');
    assert.throws(
      () => parseSchedulerName('heun'),
      (error: unknown) =>
        error instanceof InvalidRequestError && !error.message.includes('\n') && SCHEDULER_NAMES.every((name) => error.message.includes(name)),
    );
    assert.throws(() => parseTimestepSpacing('uniform'), /linspace, leading, trailing/);
  });

  it('display names follow A1111', () => {
    assert.equal(schedulerDisplayName('euler_a'), 'Euler a');
    assert.equal(schedulerDisplayName('dpmpp_2m', { karras: true }), 'DPM++ 2M Karras');
    assert.equal(schedulerDisplayName('ddim', { karras: true }), 'DDIM');
    assert.equal(schedulerDisplayName('pndm'), 'PLMS');
    for (const name of SCHEDULER_NAMES) assert.equal(createScheduler(name, SD15).displayName, schedulerDisplayName(name));
  });
});

describe('step', () => {
  it("LMS matches diffusers' LMS (scipy quad coefficients) over 10 steps", () => {
    // Expected values: diffusers' LMSDiscreteScheduler.step re-done in numpy float32 with scipy.integrate.quad
    // (outside this project), on the 10-step SD 1.5 schedule, a 4-value sample and model outputs varying per step.
    const scheduler = createScheduler('lms', SD15);
    scheduler.setTimesteps(10);
    const sigma0 = scheduler.sigmas![0]!;
    let sample: Float32Array = Float32Array.from([1.5, -0.25, 3.0, -2.0], (v) => v * sigma0);
    const expectedAfter: Record<number, number[]> = {
      0: [16.22120475769043, -10.428422927856445, 40.45655822753906, -27.19686508178711],
      1: [13.231281280517578, -7.993085861206055, 39.24130630493164, -26.427703857421875],
      3: [14.55188274383545, -8.574920654296875, 38.63088607788086, -26.595121383666992],
      9: [14.72957992553711, -7.384343147277832, 38.861358642578125, -29.97374153137207],
    };
    scheduler.timesteps.forEach((t, i) => {
      const epsilon = Float32Array.from([Math.sin(i + 1), Math.cos(2 * i), 0.5 - 0.1 * i, -0.3 + 0.05 * i * i]);
      sample = scheduler.step(epsilon, t, sample);
      const expected = expectedAfter[i];
      if (expected) assertAllClose(sample, expected, 1e-4, `LMS after step ${i}`);
    });
  });

  it('Euler a draws one randn of the sample size per step from the generator it is given', () => {
    const count = 64;
    const scheduler = createScheduler('euler_a', SD15);
    scheduler.setTimesteps(4);
    const generator = createNoiseGenerator('cpu', 42n);
    const latents = generator.randn(count).map((v) => v * scheduler.initNoiseSigma);
    const epsilon = new Float32Array(count).map((_, i) => Math.sin(i));
    const t = scheduler.timesteps[0]!;
    const stepped = Float32Array.from(scheduler.step(epsilon, t, latents, generator));

    // An independent generator with the same seed: skip the initial latents, the next draw is the step noise.
    const twin = createNoiseGenerator('cpu', 42n);
    twin.randn(count);
    const noise = twin.randn(count);
    const [sigma, sigmaNext] = [scheduler.sigmas![0]!, scheduler.sigmas![1]!];
    const sigmaUp = Math.sqrt((sigmaNext ** 2 * (sigma ** 2 - sigmaNext ** 2)) / sigma ** 2);
    const sigmaDown = Math.sqrt(sigmaNext ** 2 - sigmaUp ** 2);
    for (let i = 0; i < count; i++) {
      const expected = latents[i]! + epsilon[i]! * (sigmaDown - sigma) + noise[i]! * sigmaUp;
      assert.ok(Math.abs(stepped[i]! - expected) < 1e-4, `element ${i}`);
    }
    // And the streams stay aligned afterwards.
    assert.deepEqual(generator.randn(28), twin.randn(28));
    assert.throws(() => scheduler.step(epsilon, scheduler.timesteps[1]!, stepped), /generator/);
  });

  it('Euler is x + ε·(σ_next − σ) and the UNet input is x/√(σ²+1)', () => {
    const scheduler = createScheduler('euler', SD15);
    scheduler.setTimesteps(30);
    const [sigma, sigmaNext] = [scheduler.sigmas![0]!, scheduler.sigmas![1]!];
    const sample = Float32Array.from([1, -2, 3.5, 0.25]);
    const epsilon = Float32Array.from([0.5, 0.1, -1, 2]);
    const scaled = scheduler.scaleModelInput(sample, scheduler.timesteps[0]!);
    assertAllClose(scaled, Array.from(sample, (x) => x / Math.sqrt(sigma ** 2 + 1)), 1e-6, 'scaled');
    const next = scheduler.step(epsilon, scheduler.timesteps[0]!, sample);
    assertAllClose(next, Array.from(sample, (x, i) => x + epsilon[i]! * (sigmaNext - sigma)), 1e-5, 'stepped');
  });

  it('DDIM clips x̂₀ when a config lacks clip_sample (its default is true) and not with SD 1.5’s false', () => {
    const { clip_sample: _, ...noClipKey } = SD15;
    const clipping = createScheduler('ddim', noClipKey);
    const plain = createScheduler('ddim', SD15);
    for (const scheduler of [clipping, plain]) scheduler.setTimesteps(10);
    const sample = Float32Array.from([5, -5, 0.1, 0]);
    const epsilon = Float32Array.from([0, 0, 0, 0]);
    const t = plain.timesteps[0]!;
    const clipped = Array.from(clipping.step(epsilon, t, sample));
    const unclipped = Array.from(plain.step(epsilon, t, sample));
    // With ε = 0: x_prev = √ᾱ_prev · x̂₀, x̂₀ = x/√ᾱ_t. Unclipped that is linear in x; clipped, x̂₀ = ±1 for x = ±5.
    assert.ok(Math.abs(unclipped[0]! / unclipped[2]! - 50) < 1e-3);
    assert.ok(unclipped[0]! > 5, 'x̂₀ of 5 at a noisy timestep is far outside [-1, 1]');
    assert.equal(clipped[0], -clipped[1]!);
    assert.ok(clipped[0]! > 0 && clipped[0]! < 1, 'x_prev = √ᾱ_prev · 1');
    assert.equal(clipped[3], 0);
  });

  it('every scheduler runs a whole schedule without touching its inputs and reuses two output buffers', () => {
    const count = 4 * 8 * 8;
    for (const name of SCHEDULER_NAMES) {
      for (const karras of name === 'euler' || name === 'lms' || name === 'dpmpp_2m' ? [false, true] : [false]) {
        const scheduler = createScheduler(name, SD15, { karras });
        scheduler.setTimesteps(12);
        const generator = createNoiseGenerator('cpu', 7n);
        let latents: Float32Array = generator.randn(count).map((v) => v * scheduler.initNoiseSigma);
        const epsilon = new Float32Array(count);
        const seen = new Set<Float32Array>();
        for (const t of scheduler.timesteps) {
          const input = scheduler.scaleModelInput(latents, t);
          for (let i = 0; i < count; i++) epsilon[i] = 0.9 * input[i]! + 0.1 * Math.cos(i + t);
          const before = Float32Array.from(latents);
          const epsilonBefore = Float32Array.from(epsilon);
          const next = scheduler.step(epsilon, t, latents, generator);
          assert.notEqual(next, latents, `${name}: step returns a new buffer`);
          assert.deepEqual(latents, before, `${name}: sample untouched`);
          assert.deepEqual(epsilon, epsilonBefore, `${name}: model output untouched`);
          seen.add(next);
          latents = next;
        }
        assert.ok(seen.size <= 2, `${name}: ${seen.size} output buffers`);
        assert.ok(latents.every(Number.isFinite), `${name}${karras ? ' karras' : ''}: finite result`);
        // A second generation on the same scheduler starts from a clean state.
        scheduler.setTimesteps(5);
        assert.equal(scheduler.timesteps.length >= 5, true);
      }
    }
  });

  it('rejects step counts outside 1 … num_train_timesteps', () => {
    const scheduler = createScheduler('euler', SD15);
    assert.throws(() => scheduler.setTimesteps(0), RangeError);
    assert.throws(() => scheduler.setTimesteps(1001), RangeError);
    assert.throws(() => scheduler.setTimesteps(2.5), RangeError);
  });
});
