/**
 * What every handler does with an interaction: answer privately whatever state it is in, tell who asks and where
 * (`Requester`), remember where a job's message lives (`ReplyTarget`), and turn a request down (`Refusal`).
 */
import { MessageFlags, PermissionFlagsBits, type RepliableInteraction } from 'discord.js';
import { ImagineError } from '../errors.js';
import type { JsonObject } from '../queue/index.js';
import type { Requester } from './backend.js';
import { isGoneError } from './errors.js';
import type { ReplyTarget } from './job-message.js';

/**
 * A request the bot turns down, with the sentence the member sees. Handlers throw it; the router answers it
 * ephemerally and logs it at info level, like every other ImagineError.
 */
export class Refusal extends ImagineError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'Refusal';
  }
}

/** An ephemeral one-sentence answer, whatever state the interaction is in. */
export async function replyEphemeral(interaction: RepliableInteraction, content: string): Promise<void> {
  // `ephemeral` is false only after a public deferReply; after a button's deferUpdate it stays null, and deleting
  // "the reply" then would delete the job message the button sits on.
  if (interaction.deferred && interaction.ephemeral === false) {
    // A public "thinking…" is already there: remove it and answer privately.
    // Gone already (deleted, expired) is fine; any other failure is thrown for the caller to log, after the private
    // answer below, which is what matters.
    const deleted = await interaction.deleteReply().then(
      () => null,
      (error: unknown) => (isGoneError(error) ? null : error),
    );
    await interaction.followUp({ content, flags: MessageFlags.Ephemeral });
    if (deleted) throw deleted;
  } else if (interaction.deferred || interaction.replied) {
    await interaction.followUp({ content, flags: MessageFlags.Ephemeral });
  } else {
    await interaction.reply({ content, flags: MessageFlags.Ephemeral });
  }
}

/** Who asks, where; undefined outside a guild (every command works in guilds only). */
export function requesterOf(interaction: RepliableInteraction): Requester | undefined {
  if (!interaction.inGuild() || !interaction.guildId || !interaction.channelId) return undefined;
  const member = interaction.member;
  const roleIds = member ? (Array.isArray(member.roles) ? member.roles : [...member.roles.cache.keys()]) : [];
  const channel = interaction.channel;
  // A thread follows its parent channel: the allow-list and the NSFW flag are the parent's.
  const parent = channel?.isThread() ? channel.parent : null;
  const nsfwSource = parent ?? channel;
  const channelNsfw = nsfwSource !== null && 'nsfw' in nsfwSource ? nsfwSource.nsfw === true : false;
  return {
    guildId: interaction.guildId,
    channelId: interaction.channelId,
    ...(channel?.isThread() && channel.parentId ? { parentChannelId: channel.parentId } : {}),
    channelNsfw,
    userId: interaction.user.id,
    roleIds,
    isAdmin: interaction.memberPermissions?.has(PermissionFlagsBits.ManageGuild) === true,
  };
}

/** Where a job's message is: the interaction's reply, editable through its token for 15 minutes. */
export function replyTargetFor(interaction: RepliableInteraction, receivedAt: number, replyMessageId?: string): ReplyTarget {
  return {
    applicationId: interaction.applicationId,
    interactionToken: interaction.token,
    interactionAt: receivedAt,
    guildId: interaction.guildId,
    channelId: interaction.channelId ?? '',
    requesterId: interaction.user.id,
    ...(replyMessageId ? { replyMessageId } : {}),
  };
}

/** A reply target as stored in a job's meta (JSON, without undefined fields). */
export function replyTargetToJson(target: ReplyTarget): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(target)) if (value !== undefined) out[key] = value as string | number | boolean | null;
  return out;
}
