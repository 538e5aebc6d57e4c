/** `/imagine-queue`: what is generating, how many wait here and in all, and the caller's own jobs with their places. */
import { MessageFlags, type ChatInputCommandInteraction } from 'discord.js';
import type { HandlerContext } from './context.js';

/** Prompts longer than this are cut with an ellipsis, so one line stays one line. */
const PROMPT_PREVIEW_CHARS = 60;

export async function handleQueue(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  const snapshot = await context.queue.snapshot(interaction.user.id);
  const lines: string[] = [];
  const running = snapshot.running[0];
  lines.push(running ? `Now generating: a job of <@${running.job.owner.userId}> (step ${running.step}/${running.totalSteps}).` : 'Nothing is generating right now.');
  const here = snapshot.guilds.find((g) => g.guildId === interaction.guildId);
  lines.push(`Waiting: ${here?.queued ?? 0} job(s) in this server, ${snapshot.queuedTotal} in all.`);
  const mine = snapshot.user.filter((standing) => standing.job.owner.guildId === interaction.guildId || !interaction.guildId);
  if (mine.length === 0) lines.push('You have no jobs waiting.');
  for (const standing of mine) {
    const where = standing.position === 0 ? 'running now' : `position ${standing.position}`;
    const { prompt } = standing.job.params;
    const shown = prompt.length > PROMPT_PREVIEW_CHARS ? `${prompt.slice(0, PROMPT_PREVIEW_CHARS - 1)}…` : prompt;
    lines.push(`• \`${standing.job.id}\` ${where}: ${shown}`);
  }
  await interaction.reply({ content: lines.join('\n'), flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
}
