import type { Keyv } from 'keyv';
import type { Logger } from 'pino';
import { Blocklist, BlocklistSyntaxError } from './blocklist.js';
import { SettingsValidationError } from './errors.js';
import { KeyedSerializer } from './serial.js';

import { NSFW_POLICIES, type NsfwPolicy } from '../config/schema.js';
import { MAX_CLIP_SKIP } from '../diffusion/clip-skip.js';

export { NSFW_POLICIES, type NsfwPolicy };

/** A guild's effective settings: config defaults with the guild's stored overrides on top. 0 means "no limit". */
export interface GuildSettings {
  rateLimit: {
    /** Jobs per user per window (sliding); 0 = no limit. */
    jobs: number;
    /** The window's length in minutes (1 … 1440). */
    minutes: number;
    /** Minimum seconds between two jobs of one user; 0 = none. */
    cooldownSeconds: number;
    /** Jobs per user per UTC day; 0 = no limit. */
    daily: number;
  };
  queue: {
    /** Active (queued or running) jobs one user may have in this guild; 0 = no limit. */
    maxPerUser: number;
    /** Active jobs the whole guild may have; 0 = no limit. */
    maxPerGuild: number;
  };
  limits: {
    maxSteps: number;
    /** Images per job, 1 … 4. */
    maxCount: number;
    maxCfg: number;
    /** Allowed sizes as "WIDTHxHEIGHT" (e.g. "512x768"). */
    sizes: string[];
  };
  /** Channel ids where /imagine works; empty = everywhere. */
  channels: string[];
  nsfw: {
    /** What happens to a flagged image in a non-NSFW channel. */
    policy: NsfwPolicy;
    /** In channels marked NSFW, skip the safety checker altogether. */
    skipCheckerInNsfwChannels: boolean;
  };
  /** A default negative prompt added to every job ('' for none). */
  negative: string;
  /** The clip skip of jobs that do not choose one (1 = the text encoder's last layer, 2 = the one before it). */
  clipSkip: number;
  /** Words/phrases or /regexes/ refused in prompts (see blocklist.ts). */
  blocklist: string[];
  /** Role ids exempt from rate limits. */
  exemptRoles: string[];
}

type Groups = 'rateLimit' | 'queue' | 'limits' | 'nsfw';
/** A change: groups may be partial, lists replace the whole list. */
export type GuildSettingsPatch = {
  [K in keyof GuildSettings]?: K extends Groups ? Partial<GuildSettings[K]> : GuildSettings[K];
};

/** A complete, valid settings object: a reference for the config defaults and a fallback for tests. */
export const FALLBACK_GUILD_SETTINGS: GuildSettings = {
  rateLimit: { jobs: 0, minutes: 10, cooldownSeconds: 0, daily: 0 },
  queue: { maxPerUser: 3, maxPerGuild: 20 },
  limits: { maxSteps: 50, maxCount: 4, maxCfg: 20, sizes: ['512x512', '512x768', '768x512'] },
  channels: [],
  nsfw: { policy: 'spoiler', skipCheckerInNsfwChannels: true },
  negative: '',
  clipSkip: 1,
  blocklist: [],
  exemptRoles: [],
};

export const SETTINGS_VERSION = 2;

/** The stored record: only what the guild changed, so unchanged fields follow the config defaults. */
interface StoredSettings {
  version: typeof SETTINGS_VERSION;
  overrides: GuildSettingsPatch;
  updatedAt: number;
  updatedBy: string;
}

/**
 * Version 1 was the flat record of the first prototype (no `version` field). It is kept as a migration source so
 * the upgrade path is exercised from the start; later shape changes add version 2 → 3 and so on.
 */
interface SettingsV1 {
  jobsPerWindow?: number;
  windowMinutes?: number;
  cooldown?: number;
  dailyQuota?: number;
  maxQueuedPerUser?: number;
  maxSteps?: number;
  maxImages?: number;
  allowedChannels?: string[];
  bannedWords?: string[];
  nsfwMode?: 'spoiler' | 'blur' | 'block';
  defaultNegative?: string;
  exemptRoles?: string[];
}

const LIST_MAX = { channels: 100, blocklist: 100, exemptRoles: 50 } as const;
const SNOWFLAKE = /^\d{1,20}$/;
const SIZE_PATTERN = /^(\d{2,4})\s*[x×]\s*(\d{2,4})$/i;

function wholeNumber(field: string, value: unknown, min: number, max: number, what: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new SettingsValidationError(field, `${what} must be a whole number from ${min} to ${max}.`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** "512×768" or "512 x 768" → "512x768"; undefined when it is not a size. */
export function normaliseSize(size: string): string | undefined {
  const m = SIZE_PATTERN.exec(size.trim());
  return m ? `${Number(m[1])}x${Number(m[2])}` : undefined;
}

/** Validates one group of settings; throws SettingsValidationError with a one-sentence message. */
function validateGroup(group: keyof GuildSettings, s: GuildSettings): void {
  switch (group) {
    case 'rateLimit': {
      const r = s.rateLimit;
      wholeNumber('rateLimit.jobs', r?.jobs, 0, 1000, 'Jobs per window (0 = no limit)');
      wholeNumber('rateLimit.minutes', r.minutes, 1, 1440, 'The window in minutes');
      wholeNumber('rateLimit.cooldownSeconds', r.cooldownSeconds, 0, 86_400, 'The cooldown in seconds (0 = none)');
      wholeNumber('rateLimit.daily', r.daily, 0, 10_000, 'The daily quota (0 = no limit)');
      return;
    }
    case 'queue':
      wholeNumber('queue.maxPerUser', s.queue?.maxPerUser, 0, 100, 'Queued jobs per user (0 = no limit)');
      wholeNumber('queue.maxPerGuild', s.queue.maxPerGuild, 0, 1000, 'Queued jobs per server (0 = no limit)');
      return;
    case 'limits': {
      const l = s.limits;
      wholeNumber('limits.maxSteps', l?.maxSteps, 1, 150, 'The maximum steps');
      wholeNumber('limits.maxCount', l.maxCount, 1, 4, 'The maximum images per job');
      if (typeof l.maxCfg !== 'number' || !Number.isFinite(l.maxCfg) || l.maxCfg < 1 || l.maxCfg > 30) {
        throw new SettingsValidationError('limits.maxCfg', 'The maximum CFG scale must be a number from 1 to 30.');
      }
      if (!Array.isArray(l.sizes) || l.sizes.length === 0 || l.sizes.length > 25) {
        throw new SettingsValidationError('limits.sizes', 'Allowed sizes must list from 1 to 25 sizes.');
      }
      for (const size of l.sizes) {
        const m = typeof size === 'string' ? /^(\d+)x(\d+)$/.exec(size) : null;
        const w = Number(m?.[1]);
        const h = Number(m?.[2]);
        if (!m || w % 8 !== 0 || h % 8 !== 0 || w < 64 || h < 64 || w > 2048 || h > 2048) {
          throw new SettingsValidationError('limits.sizes', `"${String(size)}" is not a size like 512x768 with both sides multiples of 8 from 64 to 2048.`);
        }
      }
      return;
    }
    case 'channels':
    case 'exemptRoles': {
      const list = s[group];
      const what = group === 'channels' ? 'channel' : 'role';
      if (!Array.isArray(list) || list.length > LIST_MAX[group]) {
        throw new SettingsValidationError(group, `At most ${LIST_MAX[group]} ${what}s can be listed.`);
      }
      for (const id of list) {
        if (typeof id !== 'string' || !SNOWFLAKE.test(id)) throw new SettingsValidationError(group, `"${String(id)}" is not a Discord ${what} id.`);
      }
      return;
    }
    case 'nsfw':
      if (!NSFW_POLICIES.includes(s.nsfw?.policy)) {
        throw new SettingsValidationError('nsfw.policy', 'The NSFW policy must be spoiler, blur or withhold.');
      }
      if (typeof s.nsfw.skipCheckerInNsfwChannels !== 'boolean') {
        throw new SettingsValidationError('nsfw.skipCheckerInNsfwChannels', 'Whether NSFW channels skip the checker must be true or false.');
      }
      return;
    case 'negative':
      if (typeof s.negative !== 'string' || s.negative.length > 1000) {
        throw new SettingsValidationError('negative', 'The default negative prompt can be at most 1000 characters long.');
      }
      return;
    case 'clipSkip':
      wholeNumber('clipSkip', s.clipSkip, 1, MAX_CLIP_SKIP, 'The default clip skip');
      return;
    case 'blocklist':
      if (!Array.isArray(s.blocklist) || s.blocklist.length > LIST_MAX.blocklist) {
        throw new SettingsValidationError('blocklist', `At most ${LIST_MAX.blocklist} blocklist entries are allowed.`);
      }
      try {
        Blocklist.compile(s.blocklist.map(String));
      } catch (error) {
        if (error instanceof BlocklistSyntaxError) throw new SettingsValidationError('blocklist', error.message);
        throw error;
      }
      return;
  }
}

const GROUPS: ReadonlyArray<keyof GuildSettings> = ['rateLimit', 'queue', 'limits', 'channels', 'nsfw', 'negative', 'clipSkip', 'blocklist', 'exemptRoles'];

/** Throws SettingsValidationError for the first invalid field. */
export function validateSettings(settings: GuildSettings): void {
  for (const group of GROUPS) validateGroup(group, settings);
}

function applyPatch(base: GuildSettings, patch: GuildSettingsPatch): GuildSettings {
  const out = structuredClone(base);
  for (const group of GROUPS) {
    const value = patch[group];
    if (value === undefined) continue;
    if (isRecord(value) && isRecord(out[group])) Object.assign(out[group] as object, structuredClone(value));
    else (out as unknown as Record<string, unknown>)[group] = structuredClone(value);
  }
  return out;
}

function mergePatches(older: GuildSettingsPatch, newer: GuildSettingsPatch): GuildSettingsPatch {
  const out: Record<string, unknown> = structuredClone(older);
  for (const group of GROUPS) {
    const value = newer[group];
    if (value === undefined) continue;
    out[group] = isRecord(value) && isRecord(out[group]) ? { ...out[group], ...structuredClone(value) } : structuredClone(value);
  }
  return out as GuildSettingsPatch;
}

/** Normalises what admins type: sizes to "WxH", trimmed and de-duplicated lists. */
function normalisePatch(patch: GuildSettingsPatch): GuildSettingsPatch {
  const out = structuredClone(patch);
  if (isRecord(out.limits) && Array.isArray(out.limits.sizes)) out.limits.sizes = [...new Set(out.limits.sizes.map((size) => normaliseSize(String(size)) ?? String(size)))];
  for (const list of ['channels', 'blocklist', 'exemptRoles'] as const) {
    const value = out[list];
    if (Array.isArray(value)) out[list] = [...new Set(value.map((item) => String(item).trim()))].filter((item) => item !== '');
  }
  if (typeof out.negative === 'string') out.negative = out.negative.trim();
  return out;
}

/**
 * Turns whatever is stored into overrides of the current version, or throws when it is not a settings record.
 * Each step upgrades one version; the result is validated group by group by the caller.
 */
export function migrateStoredSettings(raw: unknown): { overrides: GuildSettingsPatch; fromVersion: number } {
  if (!isRecord(raw)) throw new Error('stored settings are not an object');
  if (raw.version === SETTINGS_VERSION) {
    if (!isRecord(raw.overrides)) throw new Error('stored settings have no overrides object');
    return { overrides: raw.overrides as GuildSettingsPatch, fromVersion: SETTINGS_VERSION };
  }
  if (raw.version === undefined || raw.version === 1) return { overrides: migrateV1(raw as SettingsV1), fromVersion: 1 };
  throw new Error(`unknown settings version ${String(raw.version)}`);
}

function migrateV1(v1: SettingsV1): GuildSettingsPatch {
  const known = ['jobsPerWindow', 'windowMinutes', 'cooldown', 'dailyQuota', 'maxQueuedPerUser', 'maxSteps', 'maxImages', 'allowedChannels', 'bannedWords', 'nsfwMode', 'defaultNegative', 'exemptRoles'];
  if (!Object.keys(v1).some((key) => known.includes(key))) throw new Error('not a version 1 settings record');
  const patch: GuildSettingsPatch = {};
  const rateLimit: Partial<GuildSettings['rateLimit']> = {};
  if (v1.jobsPerWindow !== undefined) rateLimit.jobs = v1.jobsPerWindow;
  if (v1.windowMinutes !== undefined) rateLimit.minutes = v1.windowMinutes;
  if (v1.cooldown !== undefined) rateLimit.cooldownSeconds = v1.cooldown;
  if (v1.dailyQuota !== undefined) rateLimit.daily = v1.dailyQuota;
  if (Object.keys(rateLimit).length > 0) patch.rateLimit = rateLimit;
  if (v1.maxQueuedPerUser !== undefined) patch.queue = { maxPerUser: v1.maxQueuedPerUser };
  const limits: Partial<GuildSettings['limits']> = {};
  if (v1.maxSteps !== undefined) limits.maxSteps = v1.maxSteps;
  if (v1.maxImages !== undefined) limits.maxCount = v1.maxImages;
  if (Object.keys(limits).length > 0) patch.limits = limits;
  if (v1.allowedChannels !== undefined) patch.channels = v1.allowedChannels;
  // v1 blocked plain words only; they keep their meaning as whole-word entries.
  if (v1.bannedWords !== undefined) patch.blocklist = v1.bannedWords;
  // v1 called withholding "block".
  if (v1.nsfwMode !== undefined) patch.nsfw = { policy: v1.nsfwMode === 'block' ? 'withhold' : v1.nsfwMode };
  if (v1.defaultNegative !== undefined) patch.negative = v1.defaultNegative;
  if (v1.exemptRoles !== undefined) patch.exemptRoles = v1.exemptRoles;
  return patch;
}

export interface GuildSettingsStoreOptions {
  /** The `settings` namespace of the storage. */
  keyv: Keyv;
  /** Config defaults; validated here, so a broken config fails at start with the field named. */
  defaults: GuildSettings;
  logger?: Logger;
  clock?: () => number;
}

export type ListName = 'channels' | 'blocklist' | 'exemptRoles';

/**
 * Per-guild settings in keyv. Each guild's record keeps only its overrides of the config defaults, with a version
 * for migrations. Reading never throws for bad data: an unreadable record falls back to the defaults, an override
 * group that no longer validates is dropped, and both leave a warning in the log. Every change is validated first
 * and logged.
 */
export class GuildSettingsStore {
  private readonly keyv: Keyv;
  private readonly defaults: GuildSettings;
  private readonly logger: Logger | undefined;
  private readonly clock: () => number;
  private readonly serial = new KeyedSerializer();
  private readonly compiled = new Map<string, Blocklist>();

  constructor(options: GuildSettingsStoreOptions) {
    validateSettings(options.defaults);
    this.keyv = options.keyv;
    this.defaults = structuredClone(options.defaults);
    this.logger = options.logger;
    this.clock = options.clock ?? Date.now;
  }

  /** A copy of the config defaults. */
  get defaultSettings(): GuildSettings {
    return structuredClone(this.defaults);
  }

  async get(guildId: string): Promise<GuildSettings> {
    return applyPatch(this.defaults, await this.readOverrides(guildId));
  }

  /** Validates the change against the resulting settings, stores it and returns the new effective settings. */
  async update(guildId: string, patch: GuildSettingsPatch, actor: string): Promise<GuildSettings> {
    return this.serial.run(guildId, async () => {
      const change = normalisePatch(patch);
      const overrides = mergePatches(await this.readOverrides(guildId), change);
      const effective = applyPatch(this.defaults, overrides);
      for (const group of GROUPS) if (change[group] !== undefined) validateGroup(group, effective);
      const record: StoredSettings = { version: SETTINGS_VERSION, overrides, updatedAt: this.clock(), updatedBy: actor };
      await this.keyv.set(guildId, record);
      this.logger?.info({ guildId, actor, change }, 'guild settings changed');
      return effective;
    });
  }

  /** Adds to, removes from or clears one of the lists (channels, blocklist, exempt roles). */
  async editList(guildId: string, list: ListName, action: 'add' | 'remove' | 'clear', value: string | undefined, actor: string): Promise<GuildSettings> {
    const current = (await this.get(guildId))[list];
    let next: string[];
    if (action === 'clear') next = [];
    else {
      const item = (value ?? '').trim();
      if (item === '') throw new SettingsValidationError(list, 'Say which entry to add or remove.');
      next = action === 'add' ? [...current.filter((x) => x !== item), item] : current.filter((x) => x !== item);
      if (action === 'remove' && next.length === current.length) throw new SettingsValidationError(list, `"${item}" is not on the list.`);
    }
    return this.update(guildId, { [list]: next }, actor);
  }

  /** Back to the config defaults. */
  async reset(guildId: string, actor: string): Promise<GuildSettings> {
    return this.serial.run(guildId, async () => {
      await this.keyv.delete(guildId);
      this.logger?.info({ guildId, actor }, 'guild settings reset to defaults');
      return structuredClone(this.defaults);
    });
  }

  /** The guild's compiled blocklist (cached per list content). */
  blocklistFor(settings: GuildSettings): Blocklist {
    const key = JSON.stringify(settings.blocklist);
    let compiled = this.compiled.get(key);
    if (!compiled) {
      compiled = Blocklist.compile(settings.blocklist);
      if (this.compiled.size > 200) this.compiled.clear();
      this.compiled.set(key, compiled);
    }
    return compiled;
  }

  private async readOverrides(guildId: string): Promise<GuildSettingsPatch> {
    const raw = await this.keyv.get<unknown>(guildId);
    if (raw === undefined) return {};
    let migrated: { overrides: GuildSettingsPatch; fromVersion: number };
    try {
      migrated = migrateStoredSettings(raw);
    } catch (error) {
      this.logger?.warn({ guildId, reason: (error as Error).message }, 'stored guild settings unreadable; using the defaults');
      return {};
    }
    if (migrated.fromVersion !== SETTINGS_VERSION) {
      this.logger?.info({ guildId, fromVersion: migrated.fromVersion, toVersion: SETTINGS_VERSION }, 'guild settings migrated');
    }
    // Keep every group that still validates; drop (and report) the others.
    const kept: GuildSettingsPatch = {};
    for (const group of GROUPS) {
      const value = (migrated.overrides as Record<string, unknown>)[group];
      if (value === undefined) continue;
      const candidate = { [group]: value } as GuildSettingsPatch;
      try {
        validateGroup(group, applyPatch(this.defaults, normalisePatch(candidate)));
        Object.assign(kept, normalisePatch(candidate));
      } catch (error) {
        this.logger?.warn({ guildId, group, reason: (error as Error).message }, 'stored guild setting invalid; using the default for it');
      }
    }
    if (migrated.fromVersion !== SETTINGS_VERSION) {
      // Write the upgraded shape back, so the migration runs once.
      await this.serial.run(`${guildId}:migrate`, () =>
        this.keyv.set(guildId, { version: SETTINGS_VERSION, overrides: kept, updatedAt: this.clock(), updatedBy: 'migration' } satisfies StoredSettings),
      );
    }
    return kept;
  }
}
