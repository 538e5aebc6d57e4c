/**
 * What the Discord layer needs from guild settings and admission checks, in its own words. `rules.ts` implements it
 * over src/queue's settings store and admission checks; the interaction handlers only see this seam.
 */
import type { JobParams } from '../queue/types.js';

/** Who asks, where, as far as admission checks care. */
export interface Requester {
  guildId: string;
  channelId: string;
  channelNsfw: boolean;
  userId: string;
  roleIds: readonly string[];
  /** Holds Manage Guild (checked by the bot itself, whatever the command's permissions say). */
  isAdmin: boolean;
}

/** An /imagine request as typed; missing values take the guild's defaults. */
export interface ImagineOptions {
  prompt: string;
  negative?: string;
  /** Decimal text as typed (64-bit seeds do not fit Discord's integer options). */
  seed?: string;
  steps?: number;
  cfg?: number;
  size?: string;
  sampler?: string;
  count?: number;
}

export interface Admitted {
  params: JobParams;
  /** Notes for the requester when a value was clamped to the guild's limit ("steps lowered to 30"). */
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

export interface GuildRules {
  /**
   * Resolves the request against the guild's defaults and limits and checks every rule (channel allow-list,
   * blocklist, limits, rate limits, queue caps). Throws an ImagineError whose message is meant for the user.
   * On success the request counts against the user's rate limits.
   */
  admit(requester: Requester, options: ImagineOptions): Promise<Admitted>;
  /** Checks rules for re-running stored parameters (re-roll / same seed); counts like `admit`. */
  admitParams(requester: Requester, params: JobParams): Promise<Admitted>;
  safety(guildId: string): Promise<SafetySettings>;
  /** Applies one /imagine-settings subcommand for an admin; throws an ImagineError for invalid values. */
  applySettings(guildId: string, actorId: string, subcommand: string, options: Record<string, string | number | boolean | undefined>): Promise<SettingsReply>;
}
