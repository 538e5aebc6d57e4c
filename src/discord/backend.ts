/**
 * What the Discord layer needs from guild settings and admission checks, in its own words. `rules.ts` implements it
 * over src/queue's settings store and admission checks; the interaction handlers only see this seam.
 */
import type { ImagineCommands } from '../../commands/index.js';
import type { JobLineage, JobParams, JobStanding, JsonObject } from '../queue/index.js';
import type { OptionValues } from './options.js';

/** Who asks, where, as far as admission checks care. */
export interface Requester {
  guildId: string;
  channelId: string;
  /** For a thread: its parent channel (an allowed channel's threads are allowed too). */
  parentChannelId?: string;
  channelNsfw: boolean;
  userId: string;
  roleIds: readonly string[];
  /** Holds Manage Guild (checked by the bot itself, whatever the command's permissions say). */
  isAdmin: boolean;
}

/**
 * An /imagine request as typed, inferred from the command's definition in commands/ (`seed` is decimal text: 64-bit
 * seeds do not fit Discord's integer options); missing values take the defaults.
 */
export type ImagineOptions = OptionValues<ImagineCommands['imagine']['options']>;

export interface Admitted {
  params: JobParams;
  /** Notes for the requester when a value was lowered to the guild's limit ("Steps lowered to 30"). */
  notes: string[];
}

export interface SafetySettings {
  nsfwPolicy: 'spoiler' | 'blur' | 'withhold';
  checkInNsfwChannels: boolean;
}

/** The answer to an /imagine-settings subcommand: one ephemeral message. */
export interface SettingsReply {
  content: string;
}

export type SettingsValues = Record<string, string | number | boolean | undefined>;

export interface GuildRules {
  /**
   * Resolves what was typed against the defaults and checks every rule of the guild (channel allow-list,
   * blocklist, limits, queue caps, rate limits) without counting the request yet. Throws an ImagineError whose
   * message is meant for the user.
   */
  check(requester: Requester, options: ImagineOptions): Promise<Admitted>;
  /** The same checks for stored parameters (re-roll, same seed). */
  checkParams(requester: Requester, params: JobParams): Promise<Admitted>;
  /** Checks again, queues the job and counts it against the user's rate limits, as one step per guild. */
  submit(requester: Requester, params: JobParams, extra: JobLineage & { meta: JsonObject }): Promise<JobStanding>;
  /** The sizes the guild allows ("512x512", …): an attachment is fitted to one, an upscale must land on one. */
  allowedSizes(guildId: string): Promise<readonly string[]>;
  safety(guildId: string): Promise<SafetySettings>;
  /** Applies one /imagine-settings subcommand for an admin; throws an ImagineError for invalid values. */
  applySettings(guildId: string, actorId: string, subcommand: string, options: SettingsValues): Promise<SettingsReply>;
}
