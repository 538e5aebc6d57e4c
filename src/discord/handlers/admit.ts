/**
 * The two steps /imagine and the re-roll buttons share: admit within Discord's 3-second deadline, then queue the
 * job with the reply that becomes its message.
 */
import { MessageFlags, type ButtonInteraction, type ChatInputCommandInteraction } from 'discord.js';
import type { JobParams } from '../../queue/index.js';
import type { Requester } from '../backend.js';
import { replyTargetFor, replyTargetToJson } from '../interaction.js';
import type { HandlerContext } from './context.js';

/** A check that takes longer than this is answered with a deferred reply first (Discord allows 3 s). */
const ACK_BUDGET_MS = 1500;

type JobInteraction = ChatInputCommandInteraction | ButtonInteraction;

/**
 * Runs the admission check, then acknowledges with a public deferred reply, which becomes the job's message. If the
 * check is slow, the reply is deferred first so Discord's 3-second limit is never missed. A refusal is thrown: the
 * router answers it ephemerally (and removes a public "thinking…" already shown).
 */
export async function admitThenDefer<T>(interaction: JobInteraction, check: Promise<T>): Promise<{ value: T; replyMessageId?: string }> {
  const settled = check.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  const early = await Promise.race([settled, new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), ACK_BUDGET_MS).unref())]);
  let replyMessageId: string | undefined;
  if (early === 'late') {
    const response = await interaction.deferReply({ withResponse: true });
    replyMessageId = response.resource?.message?.id;
  }
  const outcome = early === 'late' ? await settled : early;
  if (!outcome.ok) throw outcome.error;
  if (early !== 'late') {
    const response = await interaction.deferReply({ withResponse: true });
    replyMessageId = response.resource?.message?.id;
  }
  return { value: outcome.value, ...(replyMessageId ? { replyMessageId } : {}) };
}

export interface AdmittedJob {
  requester: Requester;
  params: JobParams;
  receivedAt: number;
  replyMessageId: string | undefined;
  /** Told to the requester privately, e.g. "Steps lowered to 30". */
  notes: string[];
  /** The job a re-roll was made from. */
  parentId?: string;
}

/** Queues an admitted job (checked again and counted against the rate limits as one step) with its reply target. */
export async function enqueueJob(interaction: JobInteraction, context: HandlerContext, job: AdmittedJob): Promise<void> {
  const { requester, receivedAt, parentId } = job;
  const reply = replyTargetFor(interaction, receivedAt, job.replyMessageId);
  const standing = await context.rules.submit(requester, job.params, {
    ...(parentId ? { parentId } : {}),
    meta: { reply: replyTargetToJson(reply), channelNsfw: requester.channelNsfw },
  });
  context.log.info(
    { jobId: standing.job.id, guildId: requester.guildId, userId: requester.userId, position: standing.position, parentId, ms: Date.now() - receivedAt },
    'job queued',
  );
  if (job.notes.length > 0) await interaction.followUp({ content: job.notes.join(' '), flags: MessageFlags.Ephemeral }).catch(() => undefined);
}
