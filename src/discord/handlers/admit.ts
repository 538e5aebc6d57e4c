/**
 * The two steps /imagine, the job buttons (re-roll, same seed, upscale, vary) and the Remix form share: admit within
 * Discord's 3-second deadline, then queue the job with the reply that becomes its message.
 */
import { MessageFlags, type ButtonInteraction, type ChatInputCommandInteraction, type ModalSubmitInteraction } from 'discord.js';
import { lineageOf, type JobLineage, type JobParams } from '../../queue/index.js';
import type { Requester } from '../backend.js';
import { loggableError } from '../errors.js';
import { replyTargetFor, replyTargetToJson } from '../interaction.js';
import type { HandlerContext } from './context.js';

/** A check that takes longer than this is answered with a deferred reply first (Discord allows 3 s). */
const ACK_BUDGET_MS = 1500;

type JobInteraction = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/**
 * Runs the admission check, persists the request (delivery outbox: reply target with its token and time, who asks, the
 * admitted parameters), then acknowledges with a public deferred reply, which becomes the job's message: a crash
 * after the acknowledgement can no longer lose the request. If the check is slow, the record (without parameters) is
 * written and the reply deferred first, so Discord's 3-second limit is never missed. A refusal is thrown: the router
 * answers it ephemerally (and removes a public "thinking…" already shown); nothing is owed for it any more.
 */
export async function admitThenDefer<T extends { params: JobParams }>(
  interaction: JobInteraction,
  context: HandlerContext,
  admission: { check: Promise<T>; requester: Requester; receivedAt: number; lineage?: JobLineage },
): Promise<{ value: T; replyMessageId?: string }> {
  const { check, requester, receivedAt } = admission;
  const settled = check.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  const early = await Promise.race([settled, new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), ACK_BUDGET_MS).unref())]);
  const persistThenDefer = async (params: JobParams | undefined): Promise<string | undefined> => {
    const reply = replyTargetFor(interaction, receivedAt);
    const persistMs = await context.outbox.accept(interaction.id, { reply, requester, ...(params ? { params } : {}), ...lineageOf(admission.lineage ?? {}) });
    const response = await interaction.deferReply({ withResponse: true });
    context.log.debug({ interactionId: interaction.id, persistMs: Math.round(persistMs * 100) / 100, ackMs: Date.now() - receivedAt }, 'request persisted, then acknowledged');
    return response.resource?.message?.id;
  };
  let replyMessageId: string | undefined;
  try {
    if (early === 'late') replyMessageId = await persistThenDefer(undefined);
    const outcome = early === 'late' ? await settled : early;
    if (!outcome.ok) throw outcome.error;
    if (early === 'late') await context.outbox.admitted(interaction.id, outcome.value.params, replyMessageId);
    else replyMessageId = await persistThenDefer(outcome.value.params);
    return { value: outcome.value, ...(replyMessageId ? { replyMessageId } : {}) };
  } catch (error) {
    // Refused (or the acknowledgement failed): the router answers, no job will.
    await context.outbox.forget(interaction.id);
    throw error;
  }
}

export interface AdmittedJob {
  requester: Requester;
  params: JobParams;
  receivedAt: number;
  replyMessageId: string | undefined;
  /** Told to the requester privately, e.g. "Steps lowered to 30". */
  notes: string[];
  /** The job this one was made from (re-roll, variation, upscale, remix) and how. */
  lineage?: JobLineage;
}

/** Queues an admitted job (checked again and counted against the rate limits as one step) with its reply target. */
export async function enqueueJob(interaction: JobInteraction, context: HandlerContext, job: AdmittedJob): Promise<void> {
  const { requester, receivedAt } = job;
  const lineage = lineageOf(job.lineage ?? {});
  const reply = replyTargetFor(interaction, receivedAt, job.replyMessageId);
  let standing;
  try {
    standing = await context.rules.submit(requester, job.params, {
      ...lineage,
      meta: { reply: replyTargetToJson(reply), channelNsfw: requester.channelNsfw, interactionId: interaction.id },
    });
  } catch (error) {
    await context.outbox.forget(interaction.id);
    throw error;
  }
  await context.outbox.linked(interaction.id, standing.job.id, job.replyMessageId);
  context.log.info(
    { jobId: standing.job.id, guildId: requester.guildId, userId: requester.userId, position: standing.position, ...lineage, ms: Date.now() - receivedAt },
    'job queued',
  );
  if (job.notes.length > 0) {
    await interaction.followUp({ content: job.notes.join(' '), flags: MessageFlags.Ephemeral }).catch((error: unknown) => {
      context.log.warn({ err: loggableError(error), jobId: standing.job.id, route: 'POST /webhooks/:application_id/:token' }, 'could not send a follow-up note');
    });
  }
}
