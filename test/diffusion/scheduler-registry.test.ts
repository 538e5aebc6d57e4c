import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InvalidRequestError } from '../../src/diffusion/errors.js';
import {
  createScheduler,
  KARRAS_CAPABLE,
  SCHEDULER_CLASS_NAMES,
  SCHEDULER_NAMES,
  SCHEDULER_REGISTRY,
  schedulerNameForClass,
} from '../../src/diffusion/schedulers/index.js';
import type { SchedulerConfig } from '../../src/diffusion/schedulers/types.js';

const reference = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/reference/schedulers.json', import.meta.url)), 'utf8')) as {
  scheduler_config: SchedulerConfig;
  tables: Record<string, { class: string }>;
};
/** SD 1.5's own scheduler_config.json (PNDM with skip_prk_steps: A1111's "PLMS"). */
const SD15 = reference.scheduler_config;

describe('the scheduler registry', () => {
  it('has one row per scheduler name, in SCHEDULER_NAMES order', () => {
    assert.deepEqual(
      SCHEDULER_REGISTRY.map((row) => row.name),
      [...SCHEDULER_NAMES],
    );
  });

  it('covers every diffusers class the reference tables were made with, and maps each back', () => {
    const classes = new Set(Object.values(reference.tables).map((table) => table.class));
    for (const className of classes) {
      const name = schedulerNameForClass(className);
      assert.ok(name, `a row for ${className}`);
      assert.equal(SCHEDULER_CLASS_NAMES[name], className);
      // The config's _class_name alone picks that row's scheduler.
      assert.equal(createScheduler(undefined, { ...SD15, _class_name: className }).name, name);
    }
    assert.equal(schedulerNameForClass('KDPM2DiscreteScheduler'), undefined);
  });

  it("builds each row's scheduler, whose own metadata name is the row's A1111 label", () => {
    for (const row of SCHEDULER_REGISTRY) {
      const scheduler = createScheduler(row.name, SD15);
      assert.equal(scheduler.name, row.name);
      assert.equal(scheduler.displayName, row.label);
    }
  });

  it('offers Karras sigmas exactly where a row says so, and the scheduler then uses them', () => {
    assert.deepEqual([...KARRAS_CAPABLE].sort(), ['dpmpp_2m', 'dpmpp_2m_sde', 'euler', 'heun', 'lms', 'unipc']);
    for (const row of SCHEDULER_REGISTRY) {
      if (row.karras) {
        const scheduler = createScheduler(row.name, SD15, { karras: true });
        assert.equal(scheduler.karras, true, row.name);
        assert.equal(scheduler.displayName, `${row.label} Karras`);
      } else {
        assert.throws(() => createScheduler(row.name, SD15, { karras: true }), InvalidRequestError, row.name);
      }
    }
  });
});
