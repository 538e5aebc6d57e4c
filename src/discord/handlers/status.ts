/** `/imagine-status`: the bot's status line, its gateway shards and the workers behind the queue, privately. */
import { MessageFlags, type ChatInputCommandInteraction } from 'discord.js';
import { fleetStatusLines, shardStatusLines } from '../fleet-status.js';
import type { HandlerContext } from './context.js';

export async function handleStatus(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  const text = await context.statusLine();
  // The Redis backend's fleet, or the local backend's one in-process worker.
  const fleet = context.queue.workers ? fleetStatusLines(await context.queue.workers(), Date.now()) : [];
  // Every bot process's shards (Redis backend), or this process's own.
  const shards = shardStatusLines(await context.shards(), Date.now());
  await interaction.reply({ content: [`🖼️ ${text}`, ...shards, ...fleet].join('\n'), flags: MessageFlags.Ephemeral });
}
