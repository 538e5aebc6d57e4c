/**
 * A1111's "DPM++ 2M SDE": diffusers' DPMSolverMultistepScheduler with `algorithm_type="sde-dpmsolver++"` (how
 * diffusers' own sampler table maps it), i.e. the second-order multistep DPM-Solver++ in data prediction, with the
 * SDE's fresh noise each step: x_t = (σ_t/σ_s)·e^{−h}·x_s + α_t(1 − e^{−2h})·D + σ_t·√(1 − e^{−2h})·z, where z is one
 * `randn(sample.shape, generator)` per step from the pipeline's generator (drawn on the last step too, as diffusers
 * does). The update itself lives with the ODE variant in dpmpp-2m.ts (one implementation of the solver, its
 * schedule, Karras sigmas and history); this file is the sampler the name stands for.
 */
import { DpmSolverMultistepScheduler } from './dpmpp-2m.js';
import type { SchedulerConfig, SchedulerOptions } from './types.js';

export class DpmSolverSdeScheduler extends DpmSolverMultistepScheduler {
  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    super(modelConfig, options, { algorithm_type: 'sde-dpmsolver++' });
  }
}
