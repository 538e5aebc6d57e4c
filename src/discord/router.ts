/**
 * The one place an interaction meets its handler, and the one place a handler's error is answered:
 *
 * - an ImagineError (a refusal, an admission or settings error, the queue closing, …) becomes an ephemeral reply with
 *   its message and an info log line (`request refused`, with its code);
 * - anything else is an internal fault: logged as an error with the interaction id (and the job id when a button
 *   names one), answered with a generic ephemeral line.
 */
import type { ButtonInteraction, ChatInputCommandInteraction, Interaction } from 'discord.js';
import { isImagineError } from '../errors.js';
import type { Logger } from '../log.js';
import { QueueClosedError } from '../queue/index.js';
import { loggableError } from './errors.js';
import type { ButtonHandler, CommandHandler, HandlerContext } from './handlers/context.js';
import { Refusal, replyEphemeral } from './interaction.js';
import { decodeCustomId } from './render.js';

export const INTERNAL_ERROR = 'Something went wrong on the bot’s side; the details are in its log.';

export interface RouterOptions {
  log: Logger;
  context: HandlerContext;
  /** Slash commands by name. */
  commands: Readonly<Record<string, CommandHandler>>;
  button: ButtonHandler;
  /** False while the bot starts or stops: every interaction is then answered "restarting". */
  accepting(): boolean;
}

export function createRouter(options: RouterOptions): (interaction: Interaction) => Promise<void> {
  const { log, context } = options;
  return async (interaction) => {
    if (!interaction.isChatInputCommand() && !interaction.isButton()) return;
    try {
      if (!options.accepting()) throw new QueueClosedError();
      if (interaction.isButton()) return await options.button(interaction, context);
      const handler = options.commands[interaction.commandName];
      if (!handler) throw new Refusal('unknown_command', 'This command is not known to this bot version.');
      await handler(interaction, context);
    } catch (error) {
      await answerError(interaction, error, log);
    }
  };
}

async function answerError(interaction: ChatInputCommandInteraction | ButtonInteraction, error: unknown, log: Logger): Promise<void> {
  const jobId = interaction.isButton() ? decodeCustomId(interaction.customId)?.jobId : undefined;
  const where = { interactionId: interaction.id, userId: interaction.user.id, guildId: interaction.guildId, ...(jobId ? { jobId } : {}) };
  if (isImagineError(error)) {
    log.info({ ...where, code: error.code }, 'request refused');
    await replyEphemeral(interaction, error.message).catch((replyError: unknown) => log.warn({ ...where, err: loggableError(replyError) }, 'could not send a refusal'));
    return;
  }
  log.error({ ...where, err: loggableError(error) }, 'interaction failed');
  await replyEphemeral(interaction, INTERNAL_ERROR).catch(() => undefined);
}
