/**
 * The buttons under a job's message: cancel, delete, re-roll (same settings, new seed), same seed, and on finished
 * images Upscale ×2 / U1…U4, Vary / V1…V4, Remix and ⓘ. The custom_id holds the action, the job id and, for image
 * buttons, the image; the job is read from the store, so buttons keep working after a restart.
 */
import { MessageFlags, type ButtonInteraction, type ModalSubmitInteraction } from 'discord.js';
import { ComponentType, TextInputStyle } from 'discord-api-types/v10';
import { HIRES_FIX_SCALE, HIRES_FIX_STRENGTH, randomSeed, type JobLineage, type JobParams, type JobRecord } from '../../queue/index.js';
import type { Requester } from '../backend.js';
import { isGoneError } from '../errors.js';
import { downloadAttachment, sizeList } from '../input-image.js';
import { Refusal, requesterOf } from '../interaction.js';
import { jobInfoContent } from '../job-info.js';
import { decodeCustomId, encodeCustomId } from '../render.js';
import { resultFileName } from '../attachments.js';
import { admitThenDefer, enqueueJob } from './admit.js';
import type { HandlerContext } from './context.js';

/** img2img strengths of Midjourney's "subtle" and "strong" variations (Upscale ×2 uses the engine's HIRES_FIX_*). */
export const VARY_SUBTLE_STRENGTH = 0.35;
export const VARY_STRONG_STRENGTH = 0.65;

/** The Remix modal's text inputs. */
const REMIX_PROMPT = 'prompt';
const REMIX_NEGATIVE = 'negative';

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
  /** Admits parameters made from this job (prepared within the admission check, which may be slow), then queues them. */
  const queueDerived = async (prepare: () => Promise<JobParams>, lineage: JobLineage): Promise<void> => {
    const check = prepare().then((params) => context.rules.checkParams(requester, params));
    const admitted = await admitThenDefer(interaction, context, { check, requester, receivedAt, lineage });
    await enqueueJob(interaction, context, { requester, params: admitted.value.params, receivedAt, replyMessageId: admitted.replyMessageId, notes: admitted.value.notes, lineage });
  };

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
      await queueDerived(async () => wanted, { parentId: jobId, relation: action === 'same' ? 'same-seed' : 'reroll' });
      return;
    }
    case 'upscale': {
      const image = imageOf(job, decoded.image);
      await queueDerived(async () => upscaleParams(interaction, context, requester, job, image), { parentId: jobId, relation: 'upscale', parentImage: image });
      return;
    }
    case 'vary':
    case 'vary-strong': {
      const image = imageOf(job, decoded.image);
      const strength = action === 'vary' ? VARY_SUBTLE_STRENGTH : VARY_STRONG_STRENGTH;
      await queueDerived(async () => {
        const ref = await context.inputImages.put(await sourceImage(interaction, context, job, image));
        // A new seed: the same picture, drawn again from other noise; as many images as the job had.
        return { ...job.params, seed: randomSeed().toString(), init: { ref, strength } };
      }, { parentId: jobId, relation: 'variation', parentImage: image });
      return;
    }
    case 'remix': {
      // A modal must be the first answer: it opens at once, prefilled; its submission comes back to handleModal.
      await interaction.showModal({
        custom_id: encodeCustomId('remix', jobId),
        title: 'Remix: edit the prompt',
        components: [
          {
            type: ComponentType.ActionRow,
            components: [{ type: ComponentType.TextInput, custom_id: REMIX_PROMPT, label: 'Prompt', style: TextInputStyle.Paragraph, value: job.params.prompt.slice(0, 4000), required: true, min_length: 1, max_length: 4000 }],
          },
          {
            type: ComponentType.ActionRow,
            components: [{ type: ComponentType.TextInput, custom_id: REMIX_NEGATIVE, label: 'Negative prompt', style: TextInputStyle.Paragraph, value: job.params.negative.slice(0, 4000), required: false, max_length: 4000 }],
          },
        ],
      });
      log.info('remix modal opened');
      return;
    }
    case 'info': {
      await interaction.reply({ content: await infoOf(context, job, requester), flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
      return;
    }
  }
}

/** The Remix modal's submission: the job again with the edited prompt and negative prompt (same seed and settings). */
export async function handleModal(interaction: ModalSubmitInteraction, context: HandlerContext): Promise<void> {
  const receivedAt = Date.now();
  const decoded = decodeCustomId(interaction.customId);
  if (!decoded || decoded.action !== 'remix') throw new Refusal('unknown_modal', 'This form belongs to an older version of the bot.');
  const job = await context.queue.getJob(decoded.jobId);
  if (!job) throw new Refusal('job_gone', 'This job is no longer stored, so it cannot be remixed.');
  const requester = requesterOf(interaction);
  if (!requester) throw new Refusal('guild_only', 'Remix works in servers only.');
  const prompt = interaction.fields.getTextInputValue(REMIX_PROMPT).trim();
  const negative = interaction.fields.getTextInputValue(REMIX_NEGATIVE).trim();
  if (!prompt) throw new Refusal('prompt', 'The prompt is empty: describe what to draw.');
  const lineage: JobLineage = { parentId: job.id, relation: 'remix' };
  const params: JobParams = { ...job.params, prompt, negative };
  const admitted = await admitThenDefer(interaction, context, { check: context.rules.checkParams(requester, params), requester, receivedAt, lineage });
  await enqueueJob(interaction, context, { requester, params: admitted.value.params, receivedAt, replyMessageId: admitted.replyMessageId, notes: admitted.value.notes, lineage });
}

/** The ⓘ text of a job, with its parent when it has one; only within the job's own server. */
export async function infoOf(context: HandlerContext, job: JobRecord, requester: Requester): Promise<string> {
  if (job.owner.guildId !== requester.guildId) throw new Refusal('job_elsewhere', 'That job belongs to another server.');
  const parent = job.parentId ? ((await context.queue.getJob(job.parentId)) ?? null) : undefined;
  return jobInfoContent(job, parent);
}

/** The image a button names (1-based), on a job that finished with it. */
function imageOf(job: JobRecord, image: number | undefined): number {
  if (job.status !== 'done' || !job.result) throw new Refusal('job_not_done', 'This job has no finished images to start from.');
  const index = image ?? 1;
  if (index > job.result.seeds.length) throw new Refusal('no_such_image', `This job has ${job.result.seeds.length} image(s).`);
  return index;
}

/**
 * The bytes of a finished image: from the results folder while `delivery.keepFinishedHours` keeps it, else the
 * original attachment on the message the button sits on (a fresh URL comes with the click).
 */
async function sourceImage(interaction: ButtonInteraction, context: HandlerContext, job: JobRecord, image: number): Promise<Buffer> {
  const stored = await context.outbox.readResult(job.id, image);
  if (stored) return stored;
  const name = resultFileName(job.id, image);
  const attachment = interaction.message.attachments.find((a) => a.name === name);
  if (attachment) return downloadAttachment(attachment.url);
  throw new Refusal('image_gone', 'That image is no longer stored and is not on this message; run /imagine with it as the image option instead.');
}

/**
 * Upscale ×2, A1111's hires fix: img2img at strength 0.5 (HIRES_FIX_STRENGTH) with the seed the image was made from
 * and the same prompt, at twice the size, which must be one of the guild's sizes. The image is stored as it is: the
 * engine resizes a starting image to the job's size with Lanczos before encoding it, which is the hires fix's ×2.
 */
async function upscaleParams(interaction: ButtonInteraction, context: HandlerContext, requester: Requester, job: JobRecord, image: number): Promise<JobParams> {
  const width = job.params.width * HIRES_FIX_SCALE;
  const height = job.params.height * HIRES_FIX_SCALE;
  const sizes = await context.rules.allowedSizes(requester.guildId);
  if (!sizes.includes(`${width}x${height}`)) {
    throw new Refusal('upscale_too_large', `Upscaling ×2 would make ${width}×${height}, which this server does not allow (sizes: ${sizeList(sizes)}).`);
  }
  const ref = await context.inputImages.put(await sourceImage(interaction, context, job, image));
  const seed = job.result?.seeds[image - 1] ?? job.params.seed;
  return { ...job.params, seed, count: 1, width, height, init: { ref, strength: HIRES_FIX_STRENGTH } };
}

