/**
 * The buttons under a job's message: cancel, delete, re-roll (same settings, new seed) and same seed. The job id is
 * in the button's custom_id and the job is read from the store, so buttons keep working after a restart.
 */
import type { ButtonInteraction } from 'discord.js';
import { randomSeed } from '../../queue/index.js';
import { isGoneError } from '../errors.js';
import { Refusal, requesterOf } from '../interaction.js';
import { decodeCustomId } from '../render.js';
import { admitThenDefer, enqueueJob } from './admit.js';
import type { HandlerContext } from './context.js';

const notYours = () => new Refusal('not_yours', 'That is not your job: only the person who started it or a server admin can do that.');

export async function handleButton(interaction: ButtonInteraction, context: HandlerContext): Promise<void> {
  const receivedAt = Date.now();
  const decoded = decodeCustomId(interaction.customId);
  if (!decoded) throw new Refusal('unknown_button', 'This button belongs to an older version of the bot.');
  const { action, jobId } = decoded;
  const job = await context.queue.getJob(jobId);
  if (!job) throw new Refusal('job_gone', 'This job is no longer stored, so its buttons no longer work.');
  const requester = requesterOf(interaction);
  if (!requester) throw new Refusal('guild_only', 'Buttons work in servers only.');
  const allowed = job.owner.userId === requester.userId || requester.isAdmin;
  const actor = { userId: requester.userId, isAdmin: requester.isAdmin };
  const log = context.log.child({ jobId, action, userId: requester.userId });

  switch (action) {
    case 'cancel': {
      if (!allowed) throw notYours();
      if (job.status !== 'queued' && job.status !== 'running') throw new Refusal('job_ended', 'This job has already ended.');
      await interaction.deferUpdate();
      await context.queue.cancel(jobId, actor);
      log.info('cancel requested');
      return;
    }
    case 'delete': {
      if (!allowed) throw notYours();
      // Deleting the message of a job still waiting or running cancels it first; if it ended meanwhile, fine.
      if (job.status === 'queued' || job.status === 'running') await context.queue.cancel(jobId, actor).catch(() => undefined);
      await interaction.deferUpdate();
      try {
        await interaction.deleteReply();
      } catch (error) {
        // Two clicks on Delete: the first one deleted it.
        if (isGoneError(error)) throw new Refusal('already_deleted', 'This message was already deleted.');
        throw error;
      }
      log.info('job message deleted');
      return;
    }
    case 'reroll':
    case 'same': {
      // Re-roll: the same settings with a fresh seed; same seed: exactly the stored parameters.
      const wanted = action === 'same' ? job.params : { ...job.params, seed: randomSeed().toString() };
      const admitted = await admitThenDefer(interaction, context, { check: context.rules.checkParams(requester, wanted), requester, receivedAt, parentId: jobId });
      await enqueueJob(interaction, context, {
        requester,
        params: admitted.value.params,
        receivedAt,
        replyMessageId: admitted.replyMessageId,
        notes: admitted.value.notes,
        parentId: jobId,
      });
      return;
    }
  }
}
