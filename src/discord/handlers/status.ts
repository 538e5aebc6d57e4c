/** `/imagine-status`: the bot's one status line, privately. */
import { MessageFlags, type ChatInputCommandInteraction } from 'discord.js';
import type { HandlerContext } from './context.js';

export async function handleStatus(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  const text = await context.statusLine();
  await interaction.reply({ content: `🖼️ ${text}`, flags: MessageFlags.Ephemeral });
}
