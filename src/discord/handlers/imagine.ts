/**
 * `/imagine`: read the options as the command defines them, admit, acknowledge, queue. With an `image` attachment the
 * job is img2img: the attachment is checked (type, bytes, pixels), downloaded, fitted to the allowed size nearest its
 * shape (or the size asked for), stored for the engine, and the job starts from it at `strength`.
 */
import type { Attachment, ChatInputCommandInteraction } from 'discord.js';
import { DEFAULT_STRENGTH } from '../../queue/index.js';
import type { Admitted, ImagineOptions, Requester } from '../backend.js';
import { checkAttachment, downloadAttachment, fitImage, imageSize, nearestAllowedSize } from '../input-image.js';
import { Refusal, requesterOf } from '../interaction.js';
import { readOptions } from '../options.js';
import { admitThenDefer, enqueueJob } from './admit.js';
import type { HandlerContext } from './context.js';

export async function handleImagine(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  const receivedAt = Date.now();
  const requester = requesterOf(interaction);
  if (!requester) throw new Refusal('guild_only', '/imagine works in servers only.');
  const options = readOptions(interaction.options, context.commands.imagine.options);
  const attachment = options.image === undefined ? null : interaction.options.getAttachment('image');
  if (options.image !== undefined && !attachment) throw new Refusal('image_missing', 'The attached image did not arrive; attach it again.');
  if (options.strength !== undefined && !attachment) throw new Refusal('strength_without_image', 'The strength applies to a starting image: attach one with the image option.');
  // A LoRA the engine will not find is refused now, privately, rather than failing the job later.
  const check = (attachment ? admitWithImage(context, requester, options, attachment) : context.rules.check(requester, options)).then(async (value) => {
    await context.checkLoras(value.params);
    return value;
  });
  const admitted = await admitThenDefer(interaction, context, { check, requester, receivedAt });
  context.log.debug({ interactionId: interaction.id, ms: Date.now() - receivedAt, img2img: attachment !== null }, 'request admitted and acknowledged');
  await enqueueJob(interaction, context, { requester, params: admitted.value.params, receivedAt, replyMessageId: admitted.replyMessageId, notes: admitted.value.notes });
}

async function admitWithImage(context: HandlerContext, requester: Requester, options: ImagineOptions, attachment: Attachment): Promise<Admitted> {
  checkAttachment(attachment);
  const bytes = await downloadAttachment(attachment.url);
  const { width, height } = await imageSize(bytes);
  const size = options.size ?? nearestAllowedSize(width, height, await context.rules.allowedSizes(requester.guildId));
  const admitted = await context.rules.check(requester, { ...options, ...(size ? { size } : {}) });
  const png = await fitImage(bytes, admitted.params.width, admitted.params.height);
  const ref = await context.inputImages.put(png);
  return { ...admitted, params: { ...admitted.params, init: { ref, strength: options.strength ?? DEFAULT_STRENGTH } } };
}
