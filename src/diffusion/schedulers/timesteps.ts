/** Timestep lists: spacing (linspace, leading, trailing), the allowed step count, where a schedule starts. */
import { InvalidRequestError } from '../errors.js';
import { roundHalfEven } from '../numeric.js';
import { numpyArange, numpyLinspace } from './numpy.js';
import type { TimestepSpacing } from './types.js';

const fround = Math.fround;

/**
 * The float timesteps of the sigma-based schedulers (Euler, Euler a, LMS), as float32 values, highest first:
 * linspace `np.linspace(0, T−1, n, dtype=float32)[::-1]`, leading `arange(n)·(T//n)` reversed + steps_offset,
 * trailing `round(arange(T, 0, −T/n)) − 1`.
 */
export function sigmaSchedulerTimesteps(spacing: TimestepSpacing, trainSteps: number, steps: number, stepsOffset: number): Float64Array {
  switch (spacing) {
    case 'linspace':
      return numpyLinspace(0, trainSteps - 1, steps).map(fround).reverse();
    case 'leading': {
      const ratio = Math.floor(trainSteps / steps);
      const out = new Float64Array(steps);
      for (let i = 0; i < steps; i++) out[i] = fround(fround((steps - 1 - i) * ratio) + stepsOffset);
      return out;
    }
    case 'trailing':
      return numpyArange(trainSteps, 0, -trainSteps / steps).map((t) => fround(fround(roundHalfEven(t)) - 1));
  }
}

/**
 * diffusers' `index_for_timestep` on the first call of a generation: the position of `timestep` in the schedule,
 * the second one when it appears twice (so img2img starting mid-schedule does not skip a sigma).
 */
export function initialStepIndex(timesteps: Float64Array, timestep: number): number {
  let first = -1;
  for (let i = 0; i < timesteps.length; i++) {
    if (timesteps[i] === timestep) {
      if (first >= 0) return i;
      first = i;
    }
  }
  if (first < 0) throw new Error(`timestep ${timestep} is not in the scheduler's schedule; call setTimesteps first and pass its timesteps`);
  return first;
}

/** The number of inference steps a request may ask for: 1 … num_train_timesteps (a user-facing error otherwise). */
export function validateStepCount(steps: number, trainSteps: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainSteps) {
    throw new InvalidRequestError(`Steps must be a whole number from 1 to ${trainSteps}, got ${steps}.`);
  }
}
