/** `/imagine-settings <subcommand>`: one change to the guild's settings, by an admin, answered privately. */
import { MessageFlags, type ChatInputCommandInteraction } from 'discord.js';
import { Refusal, requesterOf } from '../interaction.js';
import { readSubcommand } from '../options.js';
import type { HandlerContext } from './context.js';

export async function handleSettings(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  const requester = requesterOf(interaction);
  if (!requester) throw new Refusal('guild_only', 'Settings exist per server only.');
  // Checked here as well as by default_member_permissions: server owners can open the command to anyone.
  if (!requester.isAdmin) throw new Refusal('not_admin', 'You need the Manage Server permission to change these settings.');
  const { subcommand, options } = readSubcommand(interaction.options, context.commands.settings.options);
  const reply = await context.rules.applySettings(requester.guildId, requester.userId, subcommand, options);
  context.log.info({ guildId: requester.guildId, userId: requester.userId, subcommand, values: options }, 'settings changed');
  await interaction.reply({ content: reply.content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
}
