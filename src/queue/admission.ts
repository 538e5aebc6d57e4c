import type { Keyv } from 'keyv';
import type { Logger } from 'pino';
import { BlockedPromptError, ChannelNotAllowedError, QueueFullError, RateLimitedError, RequestLimitError, type RateLimitKind } from './errors.js';
import { KeyedSerializer } from './serial.js';
import type { GuildSettings, GuildSettingsStore } from './settings.js';
import { lineageOf } from './job-store.js';
import type { JobLineage, JobParams, JobQueue, JobStanding, JsonObject } from './types.js';

/** Who asks, and where. The Discord side fills this from the interaction. */
export interface AdmissionContext {
  guildId: string;
  channelId: string;
  /** For a thread: its parent channel, so threads inside an allowed channel are allowed too. */
  parentChannelId?: string;
  userId: string;
  /** The member's role ids (for exempt roles). */
  roleIds: readonly string[];
}

export interface AdmissionResult {
  /** The parameters to queue: clamped where the guild's limits say so, with the default negative merged in. */
  params: JobParams;
  /** One sentence per adjustment made (e.g. steps lowered), to show the user next to "Queued". */
  notes: string[];
  /** The settings the decision used (the Discord side reads the NSFW policy from here). */
  settings: GuildSettings;
}

export interface SubmitResult extends AdmissionResult {
  standing: JobStanding;
}

/** One user's recent usage in one guild, as stored (namespace `usage`). */
interface UsageRecord {
  v: 1;
  /** Epoch ms of jobs admitted inside the longest window still relevant, oldest first. */
  times: number[];
  /** Epoch ms of the last admitted job. */
  last: number;
  /** UTC day (YYYY-MM-DD) the daily count belongs to. */
  day: string;
  dayCount: number;
}

export interface UsageSummary {
  /** Jobs in the current sliding window, and the window's limit (0 = none). */
  inWindow: number;
  windowLimit: number;
  /** Jobs today (UTC), and the daily quota (0 = none). */
  today: number;
  dailyLimit: number;
  /** Epoch seconds when the cooldown ends, if it is running. */
  cooldownUntil?: number;
}

export interface AdmissionOptions {
  settings: GuildSettingsStore;
  /** The `usage` namespace of the storage: rate-limit records survive restarts. */
  usage: Keyv;
  queue: Pick<JobQueue, 'activeCounts' | 'enqueue' | 'snapshot'>;
  /** Active (queued + running) jobs in the whole queue, all guilds, beyond which requests are refused (config's queue.maxTotal); default no limit. */
  maxTotal?: number;
  logger?: Logger;
  /** Epoch milliseconds. */
  clock?: () => number;
}

const USAGE_TTL_MS = 2 * 24 * 3600 * 1000; // longer than the longest window (1 day), cooldown (1 day) or UTC day
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
const nextUtcMidnight = (ms: number): number => {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
};

/**
 * The checks a request passes before it is queued, in this order: channel allow-list, prompt text (something
 * visible, no control characters: `checkPromptText`), blocklist (prompt only: a negative prompt naming unwanted
 * content is the point of a negative prompt), limits, queue limits, rate limits.
 *
 * Limits, per field: a size not on the guild's list is refused (we cannot guess which other size the user wants);
 * steps, image count and CFG above the guild's maximum are lowered to it, with a note, because the user's intent
 * survives ("as good as allowed"); values below the valid minimum are refused.
 *
 * Rate limits (skipped for exempt roles): a sliding window of N jobs per M minutes per user per guild, a cooldown
 * between two jobs, and a daily quota per UTC day. When several block, the error names the one that ends last, so
 * the time it gives is really when the user may try again.
 */
export class Admission {
  private readonly settings: GuildSettingsStore;
  private readonly usage: Keyv;
  private readonly queue: Pick<JobQueue, 'activeCounts' | 'enqueue' | 'snapshot'>;
  private readonly maxTotal: number;
  private readonly logger: Logger | undefined;
  private readonly clock: () => number;
  /** Per guild: queue limits and rate limits are read-check-write, so one guild's admissions run one at a time. */
  private readonly serial = new KeyedSerializer();

  constructor(options: AdmissionOptions) {
    this.settings = options.settings;
    this.usage = options.usage;
    this.queue = options.queue;
    this.maxTotal = options.maxTotal ?? Infinity;
    this.logger = options.logger;
    this.clock = options.clock ?? Date.now;
  }

  /** Runs every check without recording usage (e.g. to validate before showing a confirmation). */
  async check(params: JobParams, ctx: AdmissionContext): Promise<AdmissionResult> {
    return this.serial.run(ctx.guildId, () => this.evaluate(params, ctx));
  }

  /** Checks and, when admitted, records the usage. For callers that enqueue by themselves. */
  async admit(params: JobParams, ctx: AdmissionContext): Promise<AdmissionResult> {
    return this.serial.run(ctx.guildId, async () => {
      const result = await this.evaluate(params, ctx);
      await this.record(ctx);
      return result;
    });
  }

  /**
   * Checks, enqueues and records usage as one step per guild, so two quick requests cannot both slip under a
   * limit. Usage is recorded only once the job is safely queued.
   */
  async submit(params: JobParams, ctx: AdmissionContext, extra: JobLineage & { meta?: JsonObject } = {}): Promise<SubmitResult> {
    return this.serial.run(ctx.guildId, async () => {
      const result = await this.evaluate(params, ctx);
      const standing = await this.queue.enqueue({
        owner: { userId: ctx.userId, guildId: ctx.guildId, channelId: ctx.channelId },
        params: result.params,
        ...lineageOf(extra),
        ...(extra.meta !== undefined ? { meta: extra.meta } : {}),
      });
      await this.record(ctx);
      return { ...result, standing };
    });
  }

  /** The user's usage against the guild's limits, for a "your quota" line. */
  async usageOf(guildId: string, userId: string): Promise<UsageSummary> {
    const settings = await this.settings.get(guildId);
    const now = this.clock();
    const record = await this.readUsage(guildId, userId);
    const windowMs = settings.rateLimit.minutes * 60_000;
    const summary: UsageSummary = {
      inWindow: record ? record.times.filter((t) => t > now - windowMs).length : 0,
      windowLimit: settings.rateLimit.jobs,
      today: record && record.day === utcDay(now) ? record.dayCount : 0,
      dailyLimit: settings.rateLimit.daily,
    };
    const cooldownEnd = record ? record.last + settings.rateLimit.cooldownSeconds * 1000 : 0;
    if (settings.rateLimit.cooldownSeconds > 0 && cooldownEnd > now) summary.cooldownUntil = Math.ceil(cooldownEnd / 1000);
    return summary;
  }

  /** Forgets a user's usage in a guild (an admin's "reset quota"). */
  async resetUsage(guildId: string, userId: string): Promise<void> {
    await this.serial.run(guildId, () => this.usage.delete(usageKey(guildId, userId)));
  }

  private async evaluate(requested: JobParams, ctx: AdmissionContext): Promise<AdmissionResult> {
    const settings = await this.settings.get(ctx.guildId);
    this.checkChannel(settings, ctx);
    checkPromptText(requested);
    this.checkBlocklist(settings, requested, ctx);
    const { params, notes } = applyLimits(settings, requested);
    await this.checkQueue(settings, ctx);
    await this.checkRate(settings, ctx);
    return { params, notes, settings };
  }

  private checkChannel(settings: GuildSettings, ctx: AdmissionContext): void {
    if (settings.channels.length === 0) return;
    if (settings.channels.includes(ctx.channelId)) return;
    if (ctx.parentChannelId !== undefined && settings.channels.includes(ctx.parentChannelId)) return;
    const shown = settings.channels.slice(0, 5).map((id) => `<#${id}>`).join(', ');
    const more = settings.channels.length > 5 ? ' and others' : '';
    throw new ChannelNotAllowedError(`Image generation is not enabled in this channel; use ${shown}${more}.`);
  }

  private checkBlocklist(settings: GuildSettings, params: JobParams, ctx: AdmissionContext): void {
    if (settings.blocklist.length === 0) return;
    const hit = this.settings.blocklistFor(settings).match(params.prompt);
    if (!hit) return;
    this.logger?.info({ guildId: ctx.guildId, userId: ctx.userId, entry: hit.entry }, 'prompt refused by the blocklist');
    throw new BlockedPromptError(`Your prompt contains "${hit.text}", which this server does not allow.`, hit.entry);
  }

  private async checkQueue(settings: GuildSettings, ctx: AdmissionContext): Promise<void> {
    const { maxPerUser, maxPerGuild } = settings.queue;
    // The whole queue's bound is the operator's (config), not a guild's: it holds whatever the guild settings say.
    if (Number.isFinite(this.maxTotal)) {
      const snapshot = await this.queue.snapshot();
      const active = snapshot.queuedTotal + snapshot.running.length;
      if (active >= this.maxTotal) {
        this.logger?.warn({ guildId: ctx.guildId, active, maxTotal: this.maxTotal }, 'request refused: the whole queue is full');
        throw new QueueFullError('total', `The bot's queue is full (${plural(active, 'job')} across all servers); try again in a few minutes.`);
      }
    }
    if (maxPerUser === 0 && maxPerGuild === 0) return;
    const counts = await this.queue.activeCounts(ctx.guildId, ctx.userId);
    if (maxPerUser > 0 && counts.user >= maxPerUser) {
      throw new QueueFullError('user', `You already have ${plural(counts.user, 'job')} queued or running, the most this server allows; wait for one to finish or cancel one.`);
    }
    if (maxPerGuild > 0 && counts.guild >= maxPerGuild) {
      throw new QueueFullError('guild', `This server's queue is full (${plural(counts.guild, 'job')}); try again when some have finished.`);
    }
  }

  private async checkRate(settings: GuildSettings, ctx: AdmissionContext): Promise<void> {
    const { jobs, minutes, cooldownSeconds, daily } = settings.rateLimit;
    if (jobs === 0 && cooldownSeconds === 0 && daily === 0) return;
    if (ctx.roleIds.some((role) => settings.exemptRoles.includes(role))) return;
    const record = await this.readUsage(ctx.guildId, ctx.userId);
    if (!record) return;
    const now = this.clock();
    const blocks: Array<{ kind: RateLimitKind; retryAtMs: number }> = [];
    if (jobs > 0) {
      const windowMs = minutes * 60_000;
      const recent = record.times.filter((t) => t > now - windowMs);
      // The oldest job that has to leave the window before one more fits.
      if (recent.length >= jobs) blocks.push({ kind: 'window', retryAtMs: (recent[recent.length - jobs] as number) + windowMs });
    }
    if (cooldownSeconds > 0 && record.last + cooldownSeconds * 1000 > now) {
      blocks.push({ kind: 'cooldown', retryAtMs: record.last + cooldownSeconds * 1000 });
    }
    if (daily > 0 && record.day === utcDay(now) && record.dayCount >= daily) {
      blocks.push({ kind: 'daily', retryAtMs: nextUtcMidnight(now) });
    }
    if (blocks.length === 0) return;
    const latest = blocks.reduce((a, b) => (b.retryAtMs > a.retryAtMs ? b : a));
    const retryAt = Math.ceil(latest.retryAtMs / 1000);
    const when = `<t:${retryAt}:R>`;
    const message =
      latest.kind === 'window'
        ? `You can start ${plural(jobs, 'job')} every ${plural(minutes, 'minute')} here; try again ${when}.`
        : latest.kind === 'cooldown'
          ? `Please wait ${plural(cooldownSeconds, 'second')} between jobs; try again ${when}.`
          : `You have used today's ${plural(daily, 'job')}; the quota resets ${when}.`;
    this.logger?.info({ guildId: ctx.guildId, userId: ctx.userId, kind: latest.kind, retryAt }, 'rate limited');
    throw new RateLimitedError(latest.kind, message, retryAt);
  }

  private async record(ctx: AdmissionContext): Promise<void> {
    const settings = await this.settings.get(ctx.guildId);
    const now = this.clock();
    const previous = await this.readUsage(ctx.guildId, ctx.userId);
    const windowMs = Math.max(settings.rateLimit.minutes, 1) * 60_000;
    const today = utcDay(now);
    const times = (previous?.times ?? []).filter((t) => t > now - windowMs);
    times.push(now);
    const record: UsageRecord = {
      v: 1,
      times: times.slice(-1000),
      last: now,
      day: today,
      dayCount: previous && previous.day === today ? previous.dayCount + 1 : 1,
    };
    await this.usage.set(usageKey(ctx.guildId, ctx.userId), record, USAGE_TTL_MS);
  }

  private async readUsage(guildId: string, userId: string): Promise<UsageRecord | undefined> {
    const raw = await this.usage.get<unknown>(usageKey(guildId, userId));
    if (raw === undefined) return undefined;
    if (
      typeof raw === 'object' && raw !== null &&
      Array.isArray((raw as UsageRecord).times) && typeof (raw as UsageRecord).last === 'number' &&
      typeof (raw as UsageRecord).day === 'string' && typeof (raw as UsageRecord).dayCount === 'number'
    ) {
      const record = raw as UsageRecord;
      return { ...record, times: record.times.filter((t) => typeof t === 'number').sort((a, b) => a - b) };
    }
    this.logger?.warn({ guildId, userId }, 'usage record unreadable; treating it as empty');
    return undefined;
  }
}

function usageKey(guildId: string, userId: string): string {
  return `${guildId}:${userId}`;
}

/**
 * Characters that draw nothing on their own: white space, control characters (NUL, …), format characters (zero-width
 * space and joiners, word joiner, BOM, soft hyphen, direction marks, tags), combining marks with nothing to combine
 * with (variation selectors among them), and the blank letters that Unicode classes as letters (Hangul fillers,
 * the blank Braille pattern).
 */
const INVISIBLE = /[\p{White_Space}\p{Cc}\p{Cf}\p{Mn}\p{Me}\u115F\u1160\u3164\uFFA0\u2800]/gu;
/** Control characters other than tab and line breaks, which some clients put in pasted text and mean nothing here. */
const CONTROL = /[^\P{Cc}\t\n\r]/u;

/** True when the text has at least one character that is drawn. */
export function hasVisibleText(text: string): boolean {
  return text.replace(INVISIBLE, '') !== '';
}

/**
 * A prompt must have something to see (a prompt of zero-width characters passes a plain emptiness check and then
 * draws the unconditional image, which nobody asked for), and neither prompt may carry control characters such as
 * NUL. A negative prompt may be empty, but not invisible-yet-not-empty.
 */
export function checkPromptText(params: Pick<JobParams, 'prompt' | 'negative'>): void {
  const fields = [
    { field: 'prompt', text: params.prompt, name: 'Your prompt', fix: 'describe what to draw' },
    { field: 'negative', text: params.negative, name: 'Your negative prompt', fix: 'leave it out for none' },
  ] as const;
  for (const { field, text, name, fix } of fields) {
    if (field === 'negative' && text === '') continue;
    if (!hasVisibleText(text)) throw new RequestLimitError(field, `${name} has no visible text (only spaces, zero-width or control characters); ${fix}.`);
    const control = CONTROL.exec(text)?.[0];
    if (control !== undefined) {
      const code = `U+${(control.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
      throw new RequestLimitError(field, `${name} contains a control character (${code}), which cannot be drawn; remove it and try again.`);
    }
  }
}

/**
 * An img2img strength in (0, 1] that leaves at least one step: the engine runs the last floor(steps · strength) of the
 * schedule (diffusers' get_timesteps), so 4 steps at 0.2 would run none.
 */
function checkStrength(strength: number, steps: number): void {
  if (!(Number.isFinite(strength) && strength > 0 && strength <= 1)) throw new RequestLimitError('strength', 'The strength must be a number above 0 and at most 1.');
  if (Math.floor(steps * strength) < 1) {
    const least = Math.ceil((100 / steps) - 1e-9) / 100;
    throw new RequestLimitError('strength', `With ${steps} steps a strength of ${strength} runs no step at all; use a strength of at least ${least} or more steps.`);
  }
}

/** Applies the guild's limits to a request; see the class comment for which fields clamp and which refuse. */
export function applyLimits(settings: GuildSettings, requested: JobParams): { params: JobParams; notes: string[] } {
  const params = { ...requested };
  const notes: string[] = [];
  const { limits } = settings;
  const size = `${params.width}x${params.height}`;
  if (!limits.sizes.includes(size)) {
    throw new RequestLimitError('size', `Size ${size} is not allowed here; choose one of ${limits.sizes.join(', ')}.`);
  }
  if (!Number.isInteger(params.steps) || params.steps < 1) throw new RequestLimitError('steps', 'Steps must be a whole number of at least 1.');
  if (!Number.isInteger(params.count) || params.count < 1) throw new RequestLimitError('count', 'The image count must be a whole number of at least 1.');
  if (!Number.isFinite(params.cfg) || params.cfg < 0) throw new RequestLimitError('cfg', 'The CFG scale must be a number of at least 0.');
  if (params.steps > limits.maxSteps) {
    notes.push(`Steps lowered from ${params.steps} to ${limits.maxSteps}, this server's maximum.`);
    params.steps = limits.maxSteps;
  }
  if (params.count > limits.maxCount) {
    notes.push(`Images lowered from ${params.count} to ${limits.maxCount}, this server's maximum.`);
    params.count = limits.maxCount;
  }
  if (params.cfg > limits.maxCfg) {
    notes.push(`CFG scale lowered from ${params.cfg} to ${limits.maxCfg}, this server's maximum.`);
    params.cfg = limits.maxCfg;
  }
  if (params.init) checkStrength(params.init.strength, params.steps);
  params.negative = mergeNegative(params.negative, settings.negative);
  return { params, notes };
}

/** The user's negative prompt followed by the guild's default one (unless the user already included it). */
export function mergeNegative(user: string, guildDefault: string): string {
  const mine = user.trim();
  const theirs = guildDefault.trim();
  if (theirs === '') return mine;
  if (mine === '') return theirs;
  if (mine.toLowerCase().includes(theirs.toLowerCase())) return mine;
  return `${mine}, ${theirs}`;
}
