/**
 * GuildRules over the configuration and the queue: turns what a member typed into the job's parameters (defaults,
 * limits clamped or refused with a clear sentence), and checks the queue caps.
 */
import type { Config } from '../config/index.js';
import { parseSize } from '../config/index.js';
import { ImagineError } from '../diffusion/errors.js';
import { parseSeed, randomSeed } from '../diffusion/rng/index.js';
import { SCHEDULER_NAMES, type SchedulerName } from '../diffusion/schedulers/types.js';
import type { Logger } from '../log.js';
import { QueueFullError, RequestLimitError } from '../queue/errors.js';
import type { Storage } from '../queue/storage.js';
import type { JobParams, JobQueue } from '../queue/types.js';
import type { Admitted, GuildRules, ImagineOptions, Requester, SafetySettings, SettingsReply } from './backend.js';

/** The limits and defaults that shape one request. */
export interface RequestLimits {
  maxSteps: number;
  maxCfg: number;
  maxCount: number;
  sizes: readonly string[];
  defaultSteps: number;
  defaultCfg: number;
  defaultSize: string;
  defaultScheduler: SchedulerName;
  /** Added to every job's negative prompt. */
  defaultNegative: string;
  rng: JobParams['rng'];
}

function sizeLabel(size: string): string {
  return size.replace('x', '×');
}

/**
 * Values above a numeric limit are lowered to it (and the requester is told); a size not on the list is refused,
 * because there is no "nearest" size that is obviously what the member meant.
 */
export function resolveParams(options: ImagineOptions, limits: RequestLimits): Admitted {
  const notes: string[] = [];
  const prompt = options.prompt.trim();
  if (!prompt) throw new RequestLimitError('prompt', 'The prompt is empty: describe what to draw.');
  const negative = [options.negative?.trim() ?? '', limits.defaultNegative.trim()].filter(Boolean).join(', ');

  let seed: string;
  if (options.seed === undefined) seed = randomSeed().toString();
  else seed = parseSeed(options.seed).toString();

  let steps = options.steps ?? limits.defaultSteps;
  if (!Number.isInteger(steps) || steps < 1) throw new RequestLimitError('steps', 'Steps must be a whole number of at least 1.');
  if (steps > limits.maxSteps) {
    notes.push(`Steps lowered from ${steps} to ${limits.maxSteps}, this server’s limit.`);
    steps = limits.maxSteps;
  }
  let cfg = options.cfg ?? limits.defaultCfg;
  if (!Number.isFinite(cfg) || cfg < 0) throw new RequestLimitError('cfg', 'CFG must be a number of at least 0.');
  if (cfg > limits.maxCfg) {
    notes.push(`CFG lowered from ${cfg} to ${limits.maxCfg}, this server’s limit.`);
    cfg = limits.maxCfg;
  }
  let count = options.count ?? 1;
  if (!Number.isInteger(count) || count < 1) throw new RequestLimitError('count', 'Count must be a whole number of at least 1.');
  if (count > limits.maxCount) {
    notes.push(`Count lowered from ${count} to ${limits.maxCount}, this server’s limit.`);
    count = limits.maxCount;
  }
  const size = options.size ?? limits.defaultSize;
  const dims = parseSize(size);
  if (!dims || !limits.sizes.includes(size)) {
    throw new RequestLimitError('size', `Size ${sizeLabel(size)} is not allowed here; choose one of ${limits.sizes.map(sizeLabel).join(', ')}.`);
  }
  const scheduler = options.sampler ?? limits.defaultScheduler;
  if (!(SCHEDULER_NAMES as readonly string[]).includes(scheduler)) {
    throw new RequestLimitError('sampler', `Unknown sampler "${scheduler}"; choose one from the list.`);
  }
  return {
    params: { prompt, negative, seed, steps, cfg, width: dims.width, height: dims.height, scheduler: scheduler as SchedulerName, count, rng: limits.rng },
    notes,
  };
}

export interface GuildRulesOptions {
  config: Config;
  storage: Storage;
  queue: JobQueue;
  log: Logger;
  /** The scheduler used when neither the request nor the config names one (the model's own). */
  defaultScheduler: SchedulerName;
}

export function limitsFromConfig(config: Config, defaultScheduler: SchedulerName): RequestLimits {
  const { defaults, limits } = config.generation;
  return {
    maxSteps: limits.maxSteps,
    maxCfg: limits.maxCfg,
    maxCount: limits.maxCount,
    sizes: limits.sizes,
    defaultSteps: defaults.steps,
    defaultCfg: defaults.cfg,
    defaultSize: defaults.size,
    defaultScheduler: (defaults.scheduler as SchedulerName | null) ?? defaultScheduler,
    defaultNegative: defaults.negative,
    rng: config.generation.rng,
  };
}

/** Rules from the configuration alone (every guild alike); the settings store refines them per guild. */
export function createGuildRules(options: GuildRulesOptions): GuildRules {
  const { config, queue } = options;
  const limits = limitsFromConfig(config, options.defaultScheduler);

  async function checkQueueCaps(requester: Requester): Promise<void> {
    const counts = await queue.activeCounts(requester.guildId, requester.userId);
    if (counts.user >= config.queue.maxPerUser) {
      throw new QueueFullError('user', `You already have ${counts.user} job(s) waiting or running; the limit is ${config.queue.maxPerUser}. Try again when one finishes.`);
    }
    if (counts.guild >= config.queue.maxPerGuild) {
      throw new QueueFullError('guild', `This server already has ${counts.guild} jobs waiting; the limit is ${config.queue.maxPerGuild}. Try again in a few minutes.`);
    }
  }

  return {
    async admit(requester, request) {
      const admitted = resolveParams(request, limits);
      await checkQueueCaps(requester);
      return admitted;
    },
    async admitParams(requester, params) {
      await checkQueueCaps(requester);
      return { params: { ...params, seed: randomSeed().toString() }, notes: [] };
    },
    async safety(): Promise<SafetySettings> {
      return config.safety;
    },
    async applySettings(): Promise<SettingsReply> {
      throw new ImagineError('not_available', 'Server settings are not available in this version.');
    },
  };
}
