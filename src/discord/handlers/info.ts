/** `/imagine-info job:<id or message link>`: the job's full parameters from the store, ephemerally. */
import { MessageFlags, type ChatInputCommandInteraction } from 'discord.js';
import { Refusal, requesterOf } from '../interaction.js';
import { parseJobReference } from '../job-info.js';
import { readOptions } from '../options.js';
import { decodeCustomId } from '../render.js';
import { infoOf } from './buttons.js';
import type { HandlerContext } from './context.js';

const NOT_A_JOB = 'Give a job id (the ⓘ button shows it) or a link to a job’s message.';

export async function handleInfo(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  const requester = requesterOf(interaction);
  if (!requester) throw new Refusal('guild_only', '/imagine-info works in servers only.');
  const { job: text } = readOptions(interaction.options, context.commands.info.options);
  const reference = parseJobReference(text);
  if (!reference) throw new Refusal('not_a_job', NOT_A_JOB);
  const jobId = 'jobId' in reference ? reference.jobId : await jobOfMessage(interaction, reference.channelId, reference.messageId);
  const job = await context.queue.getJob(jobId);
  if (!job) throw new Refusal('job_gone', `No job ${jobId} is stored (finished jobs are kept for 30 days).`);
  await interaction.reply({ content: await infoOf(context, job, requester), flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
}

/** The job a message belongs to, read from its buttons (every job message carries the job id in them). */
async function jobOfMessage(interaction: ChatInputCommandInteraction, channelId: string, messageId: string): Promise<string> {
  const channel = await interaction.client.channels.fetch(channelId).catch(() => null);
  if (!channel || !channel.isTextBased()) throw new Refusal('not_a_job', `That message cannot be read by the bot. ${NOT_A_JOB}`);
  const message = await channel.messages.fetch(messageId).catch(() => null);
  if (!message) throw new Refusal('not_a_job', `That message cannot be read by the bot. ${NOT_A_JOB}`);
  for (const row of message.components) {
    if (!('components' in row)) continue;
    for (const component of row.components) {
      const customId = 'customId' in component ? component.customId : null;
      const decoded = customId ? decodeCustomId(customId) : undefined;
      if (decoded) return decoded.jobId;
    }
  }
  throw new Refusal('not_a_job', `That message is not a job of this bot. ${NOT_A_JOB}`);
}
