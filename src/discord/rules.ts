/**
 * GuildRules over src/queue: turns what a member typed into a job's parameters (defaults filled in), runs the
 * guild's admission checks (src/queue/admission.ts: channels, blocklist, limits, queue caps, rate limits), and
 * applies /imagine-settings subcommands to the guild settings store.
 */
import type { Config } from '../config/index.js';
import { parseSize } from '../config/index.js';
import { ImagineError, isImagineError } from '../errors.js';
import { sizeLabel } from '../util/format.js';
import {
  meansRandomSeed,
  parseSeed,
  randomSeed,
  SAMPLER_REQUEST_DEFAULTS,
  schedulerDisplayName,
  RequestLimitError,
  asSamplerName,
  samplerNameOf,
  samplerSettings,
  SettingsValidationError,
  type Admission,
  type AdmissionContext,
  type GuildSettings,
  type GuildSettingsPatch,
  type GuildSettingsStore,
  type JobParams,
  type ListName,
  type SchedulerName,
} from '../queue/index.js';
import type { Admitted, GuildRules, ImagineOptions, Requester, SettingsReply, SettingsValues } from './backend.js';

/** What a request falls back to when a value is not given (the guild settings hold limits, not defaults). */
export interface RequestDefaults {
  steps: number;
  cfg: number;
  size: string;
  scheduler: SchedulerName;
  /** The default sampler is the scheduler's Karras variant (config's generation.defaults.karras). */
  karras?: boolean;
  rng: JobParams['rng'];
  /** How the engine reads prompts (generation.promptSyntax); absent = the engine's default, plain. */
  promptSyntax?: JobParams['promptSyntax'];
  /** generation.clipSkip; absent = 1. */
  clipSkip?: number;
  /** Samplers with steps/CFG of their own (LCM: few steps, low guidance), used instead of the above, and a step ceiling. */
  samplers?: Partial<Record<SchedulerName, { steps?: number; cfg?: number; maxSteps: number }>>;
}

export function requestDefaults(config: Config, modelScheduler: SchedulerName): RequestDefaults {
  const { defaults } = config.generation;
  // The sampler the configuration names as its default gets the configured steps and CFG (chosen for it); others
  // with needs of their own get those. The step ceiling holds either way.
  const samplers = Object.fromEntries(
    Object.entries(SAMPLER_REQUEST_DEFAULTS).map(([name, own]) => [name, name === defaults.scheduler ? { maxSteps: own.maxSteps } : own]),
  );
  return {
    steps: defaults.steps,
    cfg: defaults.cfg,
    size: defaults.size,
    scheduler: (defaults.scheduler as SchedulerName | null) ?? modelScheduler,
    karras: defaults.karras,
    rng: config.generation.rng,
    promptSyntax: config.generation.promptSyntax,
    clipSkip: config.generation.clipSkip,
    samplers,
  };
}

/** The guild settings every guild starts from: the configuration's defaults and limits. */
export function settingsFromConfig(config: Config): GuildSettings {
  const { limits, defaults } = config.generation;
  return {
    rateLimit: { ...config.rateLimit },
    queue: { maxPerUser: config.queue.maxPerUser, maxPerGuild: config.queue.maxPerGuild },
    // Guild settings allow at most 4 images per job (one message holds them well) and a CFG ceiling of at least 1.
    limits: { maxSteps: limits.maxSteps, maxCount: limits.maxCount, maxCfg: Math.max(1, limits.maxCfg), sizes: [...limits.sizes] },
    channels: [],
    nsfw: { policy: config.safety.nsfwPolicy, skipCheckerInNsfwChannels: !config.safety.checkInNsfwChannels },
    negative: defaults.negative,
    clipSkip: config.generation.clipSkip,
    blocklist: [],
    exemptRoles: [],
  };
}


/** A typed seed as the decimal text JobParams holds; none, or A1111's `-1`, draws a random one. */
function resolveSeed(text: string | undefined): string {
  if (text === undefined || meansRandomSeed(text)) return randomSeed().toString();
  try {
    return parseSeed(text).toString();
  } catch (error) {
    if (!isImagineError(error)) throw error;
    throw new RequestLimitError('seed', `${error.message} Leave the seed out, or type -1, for a random one.`);
  }
}

/**
 * Fills in defaults and parses what Discord's option types cannot check (seed text, size, sampler). Limits are
 * not applied here: admission lowers or refuses against the guild's own limits.
 */
export function resolveRequest(options: ImagineOptions, defaults: RequestDefaults, allowedSizes: readonly string[]): JobParams {
  const prompt = options.prompt.trim();
  if (!prompt) throw new RequestLimitError('prompt', 'The prompt is empty: describe what to draw.');
  const seed = resolveSeed(options.seed);
  // Without a size of their own, members get the configured default, or the guild's first size if it excludes it.
  const size = options.size ?? (allowedSizes.includes(defaults.size) ? defaults.size : (allowedSizes[0] ?? defaults.size));
  const dims = parseSize(size);
  if (!dims) throw new RequestLimitError('size', `Size ${sizeLabel(size)} is not a valid size; choose one from the list.`);
  // The sampler option's values are SAMPLER_NAMES: a scheduler, or its Karras variant ("dpmpp_2m_karras").
  const sampler = options.sampler === undefined ? samplerNameOf(defaults.scheduler, defaults.karras) : asSamplerName(options.sampler);
  if (sampler === undefined) throw new RequestLimitError('sampler', `Unknown sampler "${options.sampler}"; choose one from the list.`);
  const { scheduler, karras } = samplerSettings(sampler);
  const own = defaults.samplers?.[scheduler];
  const steps = options.steps ?? own?.steps ?? defaults.steps;
  if (own && steps > own.maxSteps) {
    throw new RequestLimitError('steps', `${schedulerDisplayName(scheduler)} takes at most ${own.maxSteps} steps; ask for fewer.`);
  }
  return {
    prompt,
    negative: options.negative?.trim() ?? '',
    seed,
    steps,
    cfg: options.cfg ?? own?.cfg ?? defaults.cfg,
    width: dims.width,
    height: dims.height,
    scheduler,
    // Only when chosen: other jobs keep the shape stored jobs have always had.
    ...(karras ? { karras } : {}),
    count: options.count ?? 1,
    rng: defaults.rng,
    ...(defaults.promptSyntax ? { promptSyntax: defaults.promptSyntax } : {}),
    ...clipSkipParam(options['clip-skip'] ?? defaults.clipSkip),
  };
}

/** JobParams carry clip skip only when it is not the default 1, so older and newer jobs read the same. */
function clipSkipParam(clipSkip: number | undefined): Pick<JobParams, 'clipSkip'> {
  return clipSkip !== undefined && clipSkip > 1 ? { clipSkip } : {};
}

const noLimit = (value: number, text: string) => (value === 0 ? 'no limit' : text);

/** One line per group, as /imagine-settings show prints them. */
export function describeSettings(settings: GuildSettings, only?: keyof GuildSettings): string {
  const { rateLimit: r, queue: q, limits: l, nsfw } = settings;
  const lines: Record<keyof GuildSettings, string> = {
    rateLimit: `**Rate limit:** ${noLimit(r.jobs, `${r.jobs} job(s) per ${r.minutes} minute(s)`)} per user; cooldown ${r.cooldownSeconds === 0 ? 'none' : `${r.cooldownSeconds} s`}; daily ${noLimit(r.daily, `${r.daily} job(s)`)}.`,
    queue: `**Queue:** ${noLimit(q.maxPerUser, String(q.maxPerUser))} per user, ${noLimit(q.maxPerGuild, String(q.maxPerGuild))} per server.`,
    limits: `**Limits:** steps ≤ ${l.maxSteps}, images ≤ ${l.maxCount}, CFG ≤ ${l.maxCfg}, sizes ${l.sizes.map(sizeLabel).join(', ')}.`,
    channels: `**Channels:** ${settings.channels.length === 0 ? 'everywhere' : settings.channels.map((id) => `<#${id}>`).join(', ')}.`,
    nsfw: `**NSFW:** flagged images in non-NSFW channels are ${nsfw.policy === 'withhold' ? 'withheld' : nsfw.policy === 'blur' ? 'blurred' : 'spoilered'}; NSFW channels ${nsfw.skipCheckerInNsfwChannels ? 'skip the checker' : 'are checked too'}.`,
    negative: `**Default negative prompt:** ${settings.negative ? `\`${settings.negative}\`` : 'none'}.`,
    clipSkip: `**Default clip skip:** ${settings.clipSkip}${settings.clipSkip === 1 ? " (the text encoder's last layer)" : ` (the last ${settings.clipSkip - 1} layer(s) skipped)`}; /imagine's clip-skip option overrides it.`,
    blocklist: `**Blocklist:** ${settings.blocklist.length === 0 ? 'empty' : settings.blocklist.map((e) => `\`${e}\``).join(', ')}.`,
    exemptRoles: `**Roles exempt from rate limits:** ${settings.exemptRoles.length === 0 ? 'none' : settings.exemptRoles.map((id) => `<@&${id}>`).join(', ')}.`,
  };
  if (only) return lines[only];
  return Object.values(lines).join('\n');
}

function num(values: SettingsValues, name: string): number | undefined {
  const value = values[name];
  return typeof value === 'number' ? value : undefined;
}

function str(values: SettingsValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

function listAction(values: SettingsValues): 'add' | 'remove' | 'clear' {
  const action = str(values, 'action');
  if (action === 'add' || action === 'remove' || action === 'clear') return action;
  throw new SettingsValidationError('action', 'The action must be add, remove or clear.');
}

/** Drops undefined values so a patch changes only what the admin gave. */
function defined<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface GuildRulesOptions {
  settings: GuildSettingsStore;
  admission: Admission;
  defaults: RequestDefaults;
}

export function createGuildRules(options: GuildRulesOptions): GuildRules {
  const { settings: store, admission, defaults } = options;

  const context = (requester: Requester): AdmissionContext => ({
    guildId: requester.guildId,
    channelId: requester.channelId,
    ...(requester.parentChannelId ? { parentChannelId: requester.parentChannelId } : {}),
    userId: requester.userId,
    roleIds: requester.roleIds,
  });

  async function update(guildId: string, actor: string, patch: GuildSettingsPatch, group: keyof GuildSettings): Promise<SettingsReply> {
    const hasChange = Object.values(patch).some((value) => value !== undefined && (typeof value !== 'object' || Object.keys(value).length > 0));
    const settings = hasChange ? await store.update(guildId, patch, actor) : await store.get(guildId);
    return { content: `${hasChange ? 'Saved. ' : ''}${describeSettings(settings, group)}` };
  }

  async function editList(guildId: string, actor: string, list: ListName, values: SettingsValues, valueName: string): Promise<SettingsReply> {
    const action = listAction(values);
    const value = str(values, valueName);
    if (action !== 'clear' && !value) throw new SettingsValidationError(list, `Give the ${valueName} to ${action}.`);
    const settings = await store.editList(guildId, list, action, value, actor);
    return { content: `Saved. ${describeSettings(settings, list)}` };
  }

  return {
    async check(requester, request): Promise<Admitted> {
      const settings = await store.get(requester.guildId);
      // The guild's default clip skip (config generation.clipSkip unless an admin set one); the member's option wins.
      const params = resolveRequest(request, { ...defaults, clipSkip: settings.clipSkip }, settings.limits.sizes);
      const result = await admission.check(params, context(requester));
      return { params: result.params, notes: result.notes };
    },
    async checkParams(requester, reused): Promise<Admitted> {
      // Parameters re-used from elsewhere may carry A1111's -1 for "random" too.
      const params = meansRandomSeed(reused.seed) ? { ...reused, seed: randomSeed().toString() } : reused;
      const result = await admission.check(params, context(requester));
      return { params: result.params, notes: result.notes };
    },
    async submit(requester, params, extra) {
      const result = await admission.submit(params, context(requester), extra);
      return result.standing;
    },
    async allowedSizes(guildId) {
      return (await store.get(guildId)).limits.sizes;
    },
    async safety(guildId) {
      const settings = await store.get(guildId);
      return { nsfwPolicy: settings.nsfw.policy, checkInNsfwChannels: !settings.nsfw.skipCheckerInNsfwChannels };
    },
    async applySettings(guildId, actor, subcommand, values): Promise<SettingsReply> {
      switch (subcommand) {
        case 'show':
          return { content: describeSettings(await store.get(guildId)) };
        case 'rate-limit':
          return update(guildId, actor, { rateLimit: defined({ jobs: num(values, 'jobs'), minutes: num(values, 'minutes'), cooldownSeconds: num(values, 'cooldown'), daily: num(values, 'daily') }) }, 'rateLimit');
        case 'queue':
          return update(guildId, actor, { queue: defined({ maxPerUser: num(values, 'per-user'), maxPerGuild: num(values, 'per-guild') }) }, 'queue');
        case 'limits': {
          const sizesText = str(values, 'sizes');
          const sizes = sizesText === undefined ? undefined : sizesText.split(/[\s,;]+/).filter(Boolean);
          return update(guildId, actor, { limits: defined({ maxSteps: num(values, 'max-steps'), maxCount: num(values, 'max-count'), maxCfg: num(values, 'max-cfg'), sizes }) }, 'limits');
        }
        case 'channels':
          return editList(guildId, actor, 'channels', values, 'channel');
        case 'nsfw': {
          const policy = str(values, 'policy') as GuildSettings['nsfw']['policy'] | undefined;
          const check = values['check-nsfw-channels'];
          return update(guildId, actor, { nsfw: defined({ policy, skipCheckerInNsfwChannels: typeof check === 'boolean' ? !check : undefined }) }, 'nsfw');
        }
        case 'negative':
          return update(guildId, actor, { negative: str(values, 'text') ?? '' }, 'negative');
        case 'clip-skip':
          return update(guildId, actor, { clipSkip: num(values, 'value') }, 'clipSkip');
        case 'blocklist':
          return editList(guildId, actor, 'blocklist', values, 'pattern');
        case 'roles':
          return editList(guildId, actor, 'exemptRoles', values, 'role');
        case 'reset':
          return { content: `Every setting is back to its default.\n${describeSettings(await store.reset(guildId, actor))}` };
        default:
          throw new ImagineError('unknown_subcommand', `Unknown settings subcommand "${subcommand}".`);
      }
    },
  };
}
