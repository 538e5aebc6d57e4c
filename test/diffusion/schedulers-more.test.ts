/**
 * Parity of the schedulers added after the first set (Heun, UniPC, DPM++ 2M SDE, LCM) with diffusers' own classes:
 * schedule tables and whole trajectories from test/fixtures/reference/schedulers-more.json, which
 * scripts/make-scheduler-references.py writes by running diffusers' scheduler modules (see that script for the
 * diffusers commit, the torch version and the fake UNet output).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InvalidRequestError } from '../../src/diffusion/errors.js';
import { createNoiseGenerator } from '../../src/diffusion/rng/index.js';
import {
  createScheduler,
  KARRAS_CAPABLE,
  parseSchedulerName,
  SCHEDULER_CLASS_NAMES,
  SCHEDULER_NAMES,
  schedulerDisplayName,
} from '../../src/diffusion/schedulers/index.js';
import type { SchedulerConfig, SchedulerName, SchedulerOptions } from '../../src/diffusion/schedulers/types.js';

interface TableEntry {
  timesteps: number[];
  sigmas?: number[];
  init_noise_sigma: number;
}
interface Table {
  scheduler: string;
  class: string;
  class_overrides: Record<string, unknown>;
  overrides: Record<string, unknown>;
  [steps: string]: unknown;
}
interface Trajectory {
  id: string;
  scheduler: string;
  config_changes: Record<string, unknown>;
  config_removed: string[];
  overrides: Record<string, unknown>;
  steps: number;
  seed: number;
  scale: number;
  timesteps: number[];
  latents_after_each_step: number[][];
}
interface Reference {
  generator: { diffusers_commit: string; torch: string };
  scheduler_config: SchedulerConfig;
  step_counts: number[];
  tables: Record<string, Table>;
  trajectories: Trajectory[];
}

const referencePath = fileURLToPath(new URL('../fixtures/reference/schedulers-more.json', import.meta.url));
const reference = JSON.parse(readFileSync(referencePath, 'utf8')) as Reference;
/** SD 1.5's own scheduler_config.json (PNDM, scaled_linear 0.00085–0.012, steps_offset 1, skip_prk_steps). */
const SD15 = reference.scheduler_config;

/** The user's choices a reference was built with (from_config overrides), as our options. */
function optionsFrom(overrides: Record<string, unknown>): SchedulerOptions {
  const options: SchedulerOptions = {};
  for (const [key, value] of Object.entries(overrides)) {
    if (key === 'use_karras_sigmas') options.karras = value as boolean;
    else if (key === 'timestep_spacing') options.timestepSpacing = value as SchedulerOptions['timestepSpacing'];
    else assert.fail(`unexpected override ${key}`);
  }
  return options;
}

function ourName(text: string): SchedulerName {
  assert.ok((SCHEDULER_NAMES as readonly string[]).includes(text), `we implement ${text}`);
  return text as SchedulerName;
}

/** |actual − expected| ≤ tolerance · max(1, |expected|) element by element. */
function assertClose(actual: ArrayLike<number>, expected: readonly number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const bound = tolerance * Math.max(1, Math.abs(expected[i]!));
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= bound, `${what}[${i}]: got ${actual[i]}, diffusers has ${expected[i]}`);
  }
}

describe(`scheduler tables match diffusers' (schedulers-more.json, diffusers ${reference.generator.diffusers_commit.slice(0, 10)})`, () => {
  for (const [tableName, table] of Object.entries(reference.tables)) {
    it(tableName, () => {
      const name = ourName(table.scheduler);
      assert.equal(SCHEDULER_CLASS_NAMES[name], table.class);
      for (const steps of reference.step_counts) {
        const expected = table[String(steps)] as TableEntry;
        const scheduler = createScheduler(name, SD15, optionsFrom(table.overrides));
        scheduler.setTimesteps(steps);
        // Timesteps and sigmas are float32 values on both sides: equal up to float32 rounding.
        assertClose(scheduler.timesteps, expected.timesteps, 1e-6, `${tableName} n=${steps} timesteps`);
        if (expected.sigmas) {
          assert.ok(scheduler.sigmas, `${tableName} has sigmas`);
          assertClose(scheduler.sigmas, expected.sigmas, 1e-6, `${tableName} n=${steps} sigmas`);
        } else {
          assert.equal(scheduler.sigmas, null);
        }
        assertClose([scheduler.initNoiseSigma], [expected.init_noise_sigma], 1e-6, `${tableName} n=${steps} init_noise_sigma`);
      }
    });
  }
});

describe("whole trajectories match diffusers' (schedulers-more.json: latents after every step)", () => {
  for (const trajectory of reference.trajectories) {
    it(trajectory.id, () => {
      const config: SchedulerConfig = { ...SD15, ...trajectory.config_changes };
      for (const key of trajectory.config_removed) delete config[key];
      const scheduler = createScheduler(ourName(trajectory.scheduler), config, optionsFrom(trajectory.overrides));
      scheduler.setTimesteps(trajectory.steps);
      assertClose(scheduler.timesteps, trajectory.timesteps, 1e-6, `${trajectory.id} timesteps`);

      const generator = createNoiseGenerator('cpu', BigInt(trajectory.seed));
      const count = 64;
      let latents: Float32Array = generator.randn(count).map((v) => v * scheduler.initNoiseSigma);
      const output = new Float32Array(count);
      // Both sides compute in float32, diffusers rounding every tensor operation, we once per element: they agree
      // to a few float32 ulps of the step's largest value (at most 9e-7 of it over these cases).
      const tolerance = 5e-6;
      scheduler.timesteps.forEach((t, i) => {
        const input = scheduler.scaleModelInput(latents, t);
        for (let k = 0; k < count; k++) output[k] = Math.fround(0.5 * input[k]!) + Math.fround(trajectory.scale * 0.8 * Math.cos(0.37 * k + 1.3 * i));
        latents = scheduler.step(output, t, latents, generator);
        const expected = trajectory.latents_after_each_step[i]!;
        const scale = Math.max(1, ...expected.map(Math.abs));
        assertClose(
          latents.map((v) => v / scale),
          expected.map((v) => v / scale),
          tolerance,
          `${trajectory.id} after step ${i + 1} of ${scheduler.timesteps.length} (t = ${t})`,
        );
      });
    });
  }
});

describe('Heun', () => {
  it('visits every noise level but the first twice and ends with an Euler step to σ = 0', () => {
    const scheduler = createScheduler('heun', SD15);
    scheduler.setTimesteps(4);
    assert.deepEqual(Array.from(scheduler.timesteps), [999, 666, 666, 333, 333, 0, 0]);
    const sigmas = Array.from(scheduler.sigmas!);
    assert.equal(sigmas.length, 8);
    assert.equal(sigmas[1], sigmas[2]);
    assert.equal(sigmas[5], sigmas[6]);
    assert.equal(sigmas[7], 0);
    assert.equal(scheduler.initNoiseSigma, sigmas[0]);

    // With a model output that is exactly the noise of a straight line x = x̂₀ + σ·ε, Heun (like Euler) is exact.
    const clean = Float32Array.from([0.25, -0.5, 1, 0]);
    const epsilon = Float32Array.from([1, -1, 0.5, 2]);
    let latents: Float32Array = clean.map((x, i) => x + sigmas[0]! * epsilon[i]!);
    for (const t of scheduler.timesteps) latents = scheduler.step(epsilon, t, latents);
    assertClose(latents, Array.from(clean), 1e-5, 'Heun on a straight path');
  });

  it('is offered with Karras sigmas and named as A1111 does', () => {
    assert.ok(KARRAS_CAPABLE.has('heun'));
    assert.equal(schedulerDisplayName('heun'), 'Heun');
    assert.equal(schedulerDisplayName('heun', { karras: true }), 'Heun Karras');
    assert.equal(createScheduler('heun', SD15, { karras: true }).displayName, 'Heun Karras');
    assert.equal(parseSchedulerName('Heun'), 'heun');
    assert.equal(createScheduler(undefined, { ...SD15, _class_name: 'HeunDiscreteScheduler' }).name, 'heun');
    assert.throws(() => createScheduler('heun', { ...SD15, use_beta_sigmas: true }), /use_beta_sigmas/);
    assert.throws(() => createScheduler('heun', SD15).setTimesteps(0), InvalidRequestError);
  });
});

describe('DPM++ 2M SDE', () => {
  it('is DPMSolverMultistepScheduler with sde-dpmsolver++, with Karras, named as A1111 does', () => {
    const scheduler = createScheduler('dpmpp_2m_sde', SD15);
    assert.equal(scheduler.name, 'dpmpp_2m_sde');
    assert.equal(scheduler.displayName, 'DPM++ 2M SDE');
    assert.equal(createScheduler('dpmpp_2m_sde', SD15, { karras: true }).displayName, 'DPM++ 2M SDE Karras');
    assert.equal(schedulerDisplayName('dpmpp_2m_sde', { karras: true }), 'DPM++ 2M SDE Karras');
    assert.ok(KARRAS_CAPABLE.has('dpmpp_2m_sde'));
    assert.equal(parseSchedulerName('DPMPP-2M-SDE'), 'dpmpp_2m_sde');
    // A model whose own config picks the SDE algorithm builds the same sampler and says so.
    const fromModel = createScheduler(undefined, { ...SD15, _class_name: 'DPMSolverMultistepScheduler', algorithm_type: 'sde-dpmsolver++' });
    assert.equal(fromModel.name, 'dpmpp_2m_sde');
    assert.equal(createScheduler(undefined, { ...SD15, _class_name: 'DPMSolverMultistepScheduler' }).name, 'dpmpp_2m');
  });

  it('draws one randn of the sample size per step, the last step included, and needs the generator', () => {
    const count = 16;
    const scheduler = createScheduler('dpmpp_2m_sde', SD15);
    scheduler.setTimesteps(3);
    const generator = createNoiseGenerator('cpu', 5n);
    let latents: Float32Array = generator.randn(count);
    const epsilon = new Float32Array(count).fill(0.25);
    for (const t of scheduler.timesteps) latents = scheduler.step(epsilon, t, latents, generator);
    const twin = createNoiseGenerator('cpu', 5n);
    twin.randn(count * 4);
    assert.deepEqual(generator.randn(8), twin.randn(8), 'initial latents + 3 step draws consumed');
    scheduler.setTimesteps(3);
    assert.throws(() => scheduler.step(epsilon, scheduler.timesteps[0]!, latents), /generator/);
  });
});

describe('LCM', () => {
  it('takes evenly spaced picks of the 50-step distillation schedule, 1 … original_inference_steps steps', () => {
    const scheduler = createScheduler('lcm', SD15);
    scheduler.setTimesteps(4);
    // k = 1000/50 = 20: the schedule is 19, 39, …, 999; the picks are its indices ⌊i·50/4⌋ from the top.
    assert.deepEqual(Array.from(scheduler.timesteps), [999, 759, 499, 259]);
    assert.equal(scheduler.sigmas, null);
    assert.equal(scheduler.initNoiseSigma, 1);
    scheduler.setTimesteps(50);
    assert.equal(scheduler.timesteps.at(-1), 19);
    assert.throws(() => scheduler.setTimesteps(51), (error: unknown) => error instanceof InvalidRequestError && /1 to 50/.test(error.message));
    assert.throws(() => createScheduler('lcm', SD15, { karras: true }), InvalidRequestError);
    assert.throws(() => createScheduler('lcm', { ...SD15, original_inference_steps: 2000 }), /original_inference_steps/);
    assert.equal(createScheduler(undefined, { ...SD15, _class_name: 'LCMScheduler' }).name, 'lcm');
    assert.equal(schedulerDisplayName('lcm'), 'LCM');
    assert.equal(parseSchedulerName('LCM'), 'lcm');
  });

  it('adds noise on every step but the last, drawn in the same order whether prepared early or not', () => {
    const count = 32;
    const run = (prepare: boolean): { latents: Float32Array; next: Float32Array } => {
      const scheduler = createScheduler('lcm', SD15);
      scheduler.setTimesteps(4);
      const generator = createNoiseGenerator('cpu', 9n);
      let latents: Float32Array = generator.randn(count);
      const output = new Float32Array(count);
      for (const t of scheduler.timesteps) {
        const input = scheduler.scaleModelInput(latents, t);
        if (prepare) scheduler.prepareStep?.(generator, count);
        for (let k = 0; k < count; k++) output[k] = 0.5 * input[k]! + Math.sin(k + t);
        latents = scheduler.step(output, t, latents, prepare ? undefined : generator);
      }
      return { latents: Float32Array.from(latents), next: generator.randn(4) };
    };
    const drawn = run(false);
    assert.deepEqual(run(true), drawn);
    const twin = createNoiseGenerator('cpu', 9n);
    twin.randn(count * 4); // the initial latents and three step draws: none on the last step
    assert.deepEqual(drawn.next, twin.randn(4));
  });

  it('linearStep gives the same latents as step, for every prediction type', () => {
    const count = 24;
    for (const prediction of ['epsilon', 'v_prediction', 'sample']) {
      const config = { ...SD15, prediction_type: prediction };
      const stepped = createScheduler('lcm', config);
      const linear = createScheduler('lcm', config);
      assert.ok(linear.canStepLinearly?.());
      for (const scheduler of [stepped, linear]) scheduler.setTimesteps(5);
      const generators = [createNoiseGenerator('cpu', 11n), createNoiseGenerator('cpu', 11n)] as const;
      let a: Float32Array = generators[0].randn(count);
      let b: Float32Array = generators[1].randn(count);
      const output = new Float32Array(count);
      for (const t of stepped.timesteps) {
        for (let k = 0; k < count; k++) output[k] = 0.3 * a[k]! + Math.cos(2 * k + t);
        a = stepped.step(output, t, a, generators[0]);
        const c = linear.linearStep!(t, count, generators[1]);
        b = b.map((x, k) => x * c.latents + output[k]! * c.prediction + (c.noiseValues ? c.noiseValues[k]! * c.noise : 0));
        assert.equal(c.nextInputScale, 1);
        assertClose(b, Array.from(a), 1e-5, `${prediction} at t = ${t}`);
      }
    }
    assert.equal(createScheduler('lcm', { ...SD15, clip_sample: true }).canStepLinearly?.(), false);
  });
});

describe('UniPC', () => {
  it('is UniPCMultistepScheduler (bh2, order 2, predictor-corrector), with Karras, named as A1111 does', () => {
    const scheduler = createScheduler('unipc', SD15);
    assert.equal(scheduler.displayName, 'UniPC');
    assert.equal(scheduler.initNoiseSigma, 1);
    assert.equal(createScheduler('unipc', SD15, { karras: true }).displayName, 'UniPC Karras');
    assert.equal(schedulerDisplayName('unipc', { karras: true }), 'UniPC Karras');
    assert.ok(KARRAS_CAPABLE.has('unipc'));
    assert.equal(parseSchedulerName('UniPC'), 'unipc');
    assert.equal(createScheduler(undefined, { ...SD15, _class_name: 'UniPCMultistepScheduler' }).name, 'unipc');
    // The input is not scaled: the UNet sees the sample itself.
    scheduler.setTimesteps(5);
    const sample = Float32Array.from([1, 2, 3]);
    assert.equal(scheduler.scaleModelInput(sample, scheduler.timesteps[0]!), sample);
  });

  it('refuses what it does not implement, naming the config key', () => {
    assert.throws(() => createScheduler('unipc', { ...SD15, solver_order: 4 }), /solver_order/);
    assert.throws(() => createScheduler('unipc', { ...SD15, thresholding: true }), /thresholding/);
    assert.throws(() => createScheduler('unipc', { ...SD15, use_flow_sigmas: true }), /use_flow_sigmas/);
    assert.throws(() => createScheduler('unipc', { ...SD15, solver_type: 'bh3' }), /solver_type/);
    assert.throws(() => createScheduler('unipc', { ...SD15, use_karras_sigmas: true, use_exponential_sigmas: true }), /only one of/);
  });
});

it('every scheduler in schedulers-more.json is one of ours, and each new one has tables and trajectories there', () => {
  const withTables = new Set(Object.values(reference.tables).map((table) => ourName(table.scheduler)));
  const withTrajectories = new Set(reference.trajectories.map((trajectory) => ourName(trajectory.scheduler)));
  for (const name of ['heun', 'dpmpp_2m_sde', 'unipc', 'lcm'] as const) {
    assert.ok(withTables.has(name) && withTrajectories.has(name), name);
    if (KARRAS_CAPABLE.has(name)) {
      assert.ok(Object.values(reference.tables).some((table) => table.scheduler === name && table.overrides['use_karras_sigmas']), `${name} Karras table`);
    }
  }
});
