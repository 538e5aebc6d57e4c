/**
 * What every interaction handler is given. A handler answers its interaction, or throws: an ImagineError (a
 * `Refusal`, an admission error, …) becomes an ephemeral reply with its message, anything else a logged internal
 * error (src/discord/router.ts). No handler catches errors to answer them itself.
 */
import type { ButtonInteraction, ChatInputCommandInteraction, ModalSubmitInteraction } from 'discord.js';
import type { ImagineCommands } from '../../../commands/index.js';
import type { Logger } from '../../log.js';
import type { InputImageStore, JobParams, JobQueue, ShardInfo } from '../../queue/index.js';
import type { GuildRules } from '../backend.js';
import type { DeliveryOutbox } from '../delivery.js';

export interface HandlerContext {
  log: Logger;
  queue: JobQueue;
  rules: GuildRules;
  /** Persists a request before it is acknowledged, and answers it once its job ends. */
  outbox: DeliveryOutbox;
  /** Where img2img starting images go (attachments, and the images Upscale and Vary start from). */
  inputImages: InputImageStore;
  /** The definitions the commands were registered from: handlers read their options through them. */
  commands: ImagineCommands;
  /** One line: model, provider, queue lengths, what runs, uptime. */
  statusLine(): Promise<string>;
  /** The bot's gateway shards: every bot process's (as reported through the queue backend), or this process's. */
  shards(): Promise<ShardInfo[]>;
  /** The LoRA files in model.loraDir (none when it is unset), sorted by name, with A1111's short hash. */
  loras(): Promise<Array<{ name: string; bytes: number; hash: string }>>;
  /**
   * Refuses (UnknownLoraError, InvalidRequestError) a job whose a1111 prompt names a LoRA that is not in model.loraDir
   * or writes a weight that is not a number, before it is queued.
   */
  checkLoras(params: Pick<JobParams, 'prompt' | 'promptSyntax'>): Promise<void>;
}

export type CommandHandler = (interaction: ChatInputCommandInteraction, context: HandlerContext) => Promise<void>;
export type ButtonHandler = (interaction: ButtonInteraction, context: HandlerContext) => Promise<void>;
export type ModalHandler = (interaction: ModalSubmitInteraction, context: HandlerContext) => Promise<void>;
