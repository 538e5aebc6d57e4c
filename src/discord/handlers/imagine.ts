/** `/imagine`: read the options as the command defines them, admit, acknowledge, queue. */
import type { ChatInputCommandInteraction } from 'discord.js';
import { Refusal, requesterOf } from '../interaction.js';
import { readOptions } from '../options.js';
import { admitThenDefer, enqueueJob } from './admit.js';
import type { HandlerContext } from './context.js';

export async function handleImagine(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  const receivedAt = Date.now();
  const requester = requesterOf(interaction);
  if (!requester) throw new Refusal('guild_only', '/imagine works in servers only.');
  const options = readOptions(interaction.options, context.commands.imagine.options);
  // A LoRA the engine will not find is refused now, privately, rather than failing the job later.
  const check = context.rules.check(requester, options).then(async (value) => {
    await context.checkLoras(value.params);
    return value;
  });
  const admitted = await admitThenDefer(interaction, context, { check, requester, receivedAt });
  context.log.debug({ interactionId: interaction.id, ms: Date.now() - receivedAt }, 'request admitted and acknowledged');
  await enqueueJob(interaction, context, { requester, params: admitted.value.params, receivedAt, replyMessageId: admitted.replyMessageId, notes: admitted.value.notes });
}
