/**
 * The one place an interaction meets its handler, and the one place a handler's error is answered:
 *
 * - an ImagineError (a refusal, an admission or settings error, the queue closing, …) becomes an ephemeral reply with
 *   its message and an info log line (`request refused`, with its code);
 * - Discord's 10008 Unknown Message / 10062 Unknown interaction (a race: deleted or expired meanwhile) is logged at
 *   info level and answered with `GONE` when still possible;
 * - anything else is an internal fault: logged as an error with the interaction id (and the job id when a button
 *   names one), answered with a generic ephemeral line.
 */
import type { ButtonInteraction, ChatInputCommandInteraction, Interaction, ModalSubmitInteraction } from 'discord.js';
import { isImagineError } from '../errors.js';
import type { Logger } from '../log.js';
import { QueueClosedError } from '../queue/index.js';
import { isGoneError, loggableError } from './errors.js';
import type { ButtonHandler, CommandHandler, HandlerContext, ModalHandler } from './handlers/context.js';
import { Refusal, replyEphemeral } from './interaction.js';
import { decodeCustomId } from './render.js';

/** The answer when Discord says the message or interaction no longer exists (a race, e.g. a second Delete click). */
export const GONE = 'That message or request no longer exists (it was deleted or has expired).';
export const INTERNAL_ERROR = 'Something went wrong on the bot’s side; the details are in its log.';

export interface RouterOptions {
  log: Logger;
  context: HandlerContext;
  /** Slash commands by name. */
  commands: Readonly<Record<string, CommandHandler>>;
  button: ButtonHandler;
  /** Submitted modals (Remix). */
  modal: ModalHandler;
  /** False while the bot starts or stops: every interaction is then answered "restarting". */
  accepting(): boolean;
}

export function createRouter(options: RouterOptions): (interaction: Interaction) => Promise<void> {
  const { log, context } = options;
  return async (interaction) => {
    if (!interaction.isChatInputCommand() && !interaction.isButton() && !interaction.isModalSubmit()) return;
    try {
      if (!options.accepting()) throw new QueueClosedError();
      if (interaction.isButton()) return await options.button(interaction, context);
      if (interaction.isModalSubmit()) return await options.modal(interaction, context);
      const handler = options.commands[interaction.commandName];
      if (!handler) throw new Refusal('unknown_command', 'This command is not known to this bot version.');
      await handler(interaction, context);
    } catch (error) {
      await answerError(interaction, error, log);
    }
  };
}

async function answerError(interaction: ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction, error: unknown, log: Logger): Promise<void> {
  const jobId = interaction.isButton() || interaction.isModalSubmit() ? decodeCustomId(interaction.customId)?.jobId : undefined;
  const where = { interactionId: interaction.id, userId: interaction.user.id, guildId: interaction.guildId, ...(jobId ? { jobId } : {}) };
  if (isImagineError(error)) {
    log.info({ ...where, code: error.code }, 'request refused');
    await replyEphemeral(interaction, error.message).catch((replyError: unknown) => log.warn({ ...where, err: loggableError(replyError) }, 'could not send a refusal'));
    return;
  }
  if (isGoneError(error)) {
    // Discord's races, not the bot's faults: the message was deleted (10008) or the interaction expired (10062) while
    // we answered. The member learns it if the interaction can still be answered.
    log.info({ ...where, err: loggableError(error) }, 'interaction target gone');
    // An expired interaction cannot be answered at all.
    if ((error as { code?: unknown }).code === 10062) return;
    await replyEphemeral(interaction, GONE).catch((replyError: unknown) => log.info({ ...where, err: loggableError(replyError) }, 'could not answer an interaction whose target is gone'));
    return;
  }
  log.error({ ...where, err: loggableError(error) }, 'interaction failed');
  await replyEphemeral(interaction, INTERNAL_ERROR).catch((replyError: unknown) => log.warn({ ...where, err: loggableError(replyError) }, 'could not answer a failed interaction'));
}
