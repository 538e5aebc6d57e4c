/**
 * The Discord bot: a discord.js client that turns slash commands and button clicks into queue operations, and queue
 * events into message edits (through JobPresenter). It holds no job state of its own: everything a click or a
 * restart needs is in the job store.
 */
import {
  Client,
  Events,
  GatewayIntentBits,
  MessageFlags,
  PermissionFlagsBits,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Interaction,
  type RepliableInteraction,
} from 'discord.js';
import { IMAGINE_COMMAND, QUEUE_COMMAND, SETTINGS_COMMAND, STATUS_COMMAND, type CommandDefinition } from '../../commands/index.js';
import { ConfigError, type Config } from '../config/index.js';
import { isImagineError } from '../errors.js';
import { schedulerDisplayName } from '../diffusion/schedulers/index.js';
import type { SchedulerName } from '../diffusion/schedulers/types.js';
import type { Logger } from '../log.js';
import { randomSeed } from '../diffusion/rng/index.js';
import { NotYourJobError } from '../queue/errors.js';
import type { JobParams, JobQueue, JobRecord, JsonObject, QueueSnapshot } from '../queue/types.js';
import type { GuildRules, ImagineOptions, Requester } from './backend.js';
import { deployCommands } from './command-data.js';
import type { ReplyTarget } from './job-message.js';
import { JobPresenter, type PresentedJob } from './presenter.js';
import { formatDuration } from '../util/format.js';
import { fleetStatusLines } from './fleet-status.js';
import { decodeCustomId } from './render.js';
import { loggableError } from './errors.js';

export interface EngineInfo {
  modelName: string;
  provider: string;
}

export interface BotOptions {
  config: Config;
  log: Logger;
  queue: JobQueue;
  rules: GuildRules;
  engine: EngineInfo;
  /** Registered at start (bulk overwrite: unchanged commands keep their ids). */
  commands?: CommandDefinition[];
  /** How often the status line is logged; default 5 minutes. */
  statusLogIntervalMs?: number;
}

/** A check that takes longer than this is answered with a deferred reply first (Discord allows 3 s). */
const ACK_BUDGET_MS = 1500;

const NOT_ADMIN = 'You need the Manage Server permission to change these settings.';
const NOT_YOURS = 'That is not your job: only the person who started it or a server admin can do that.';
const INTERNAL_ERROR = 'Something went wrong on the bot’s side; the details are in its log.';

/** Reads the reply target stored in a job's meta. */
export function replyTargetOf(job: JobRecord): ReplyTarget | undefined {
  const reply = job.meta['reply'];
  if (!reply || typeof reply !== 'object' || Array.isArray(reply)) return undefined;
  const r = reply as Record<string, unknown>;
  if (typeof r['applicationId'] !== 'string' || typeof r['interactionToken'] !== 'string' || typeof r['channelId'] !== 'string') return undefined;
  return reply as unknown as ReplyTarget;
}

function targetToJson(target: ReplyTarget): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(target)) if (value !== undefined) out[key] = value as string | number | boolean | null;
  return out;
}

export function presentedJob(job: JobRecord, reply: ReplyTarget): PresentedJob {
  return {
    id: job.id,
    reply,
    prompt: job.params.prompt,
    negativePrompt: job.params.negative,
    steps: job.params.steps,
    cfg: job.params.cfg,
    width: job.params.width,
    height: job.params.height,
    samplerName: samplerLabel(job.params.scheduler),
    channelNsfw: job.meta['channelNsfw'] === true,
  };
}

function samplerLabel(name: string): string {
  try {
    return schedulerDisplayName(name as SchedulerName);
  } catch {
    return name;
  }
}

function userMessage(error: unknown): string | undefined {
  return isImagineError(error) ? error.message : undefined;
}

export class ImagineBot {
  readonly client: Client;
  readonly presenter: JobPresenter;
  private readonly log: Logger;
  private accepting = false;
  private readonly startedAt = Date.now();
  private statusTimer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly options: BotOptions) {
    const { config } = options;
    this.log = options.log.child({ module: 'discord' });
    this.client = new Client({
      // Slash commands and buttons need no privileged intents; Guilds gives channel NSFW flags and member roles.
      intents: [GatewayIntentBits.Guilds],
      rest: { api: config.discord.apiBase, cdn: config.discord.cdnBase, version: '10' },
      allowedMentions: { parse: [] },
    });
    this.presenter = new JobPresenter({
      rest: this.client.rest,
      log: this.log,
      preview: config.preview,
      safetyPolicy: async (guildId) => (guildId ? options.rules.safety(guildId) : config.safety),
      saveReplyTarget: async (jobId, target) => {
        await options.queue.updateMeta(jobId, { reply: targetToJson(target) });
      },
    });
  }

  /**
   * Starts the queue first (it restores persisted jobs and their messages, over REST only), then connects to the
   * gateway, so every interaction that arrives finds a working queue; then registers the commands.
   */
  async start(): Promise<void> {
    const { config, queue } = this.options;
    if (!config.discord.token) throw new ConfigError(['DISCORD_TOKEN is not set: put the bot token in .env (see .env.example) or the environment.']);
    this.client.rest.setToken(config.discord.token);
    this.subscribe();
    await queue.start();
    this.accepting = true;

    this.client.on(Events.InteractionCreate, (interaction) => this.track(this.route(interaction)));
    this.client.on(Events.Error, (error) => this.log.error({ err: loggableError(error) }, 'discord client error'));
    this.client.on(Events.ShardDisconnect, (event) => this.log.warn({ code: event.code }, 'gateway disconnected'));
    const ready = new Promise<void>((resolve) => this.client.once(Events.ClientReady, () => resolve()));
    await this.client.login(config.discord.token);
    await ready;
    this.log.info({ user: this.client.user?.tag, guilds: this.client.guilds.cache.size }, 'connected to Discord');

    if (this.options.commands && config.discord.appId) {
      const result = await deployCommands(this.client.rest, config.discord.appId, this.options.commands, config.discord.devGuildId);
      this.log.info({ scope: result.scope, commands: result.names }, 'slash commands registered');
    }
    this.logStatus();
    this.statusTimer = setInterval(() => this.logStatus(), this.options.statusLogIntervalMs ?? 5 * 60_000);
    this.statusTimer.unref();
  }

  /**
   * Graceful stop: refuse new work, stop the queue (a running job is interrupted and stays persisted, so the next
   * start runs it again), let pending message edits go out, close the gateway.
   */
  async stop(): Promise<void> {
    this.accepting = false;
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.statusTimer = null;
    // No new jobs start after this; a running job is interrupted and stays persisted for the next start.
    await this.options.queue.close();
    // Interactions being answered and results being posted (a job that finished just before) complete first.
    await Promise.allSettled([...this.inFlight]);
    await this.presenter.closeAll();
    for (const off of this.unsubscribe.splice(0)) off();
    await this.client.destroy();
    this.log.info('disconnected from Discord');
  }

  async statusLine(): Promise<{ text: string; snapshot: QueueSnapshot }> {
    const snapshot = await this.options.queue.snapshot();
    const running = snapshot.running[0];
    const parts = [
      `model ${this.options.engine.modelName} on ${this.options.engine.provider}`,
      `queue ${snapshot.queuedTotal} waiting${snapshot.guilds.length > 0 ? ` in ${snapshot.guilds.length} server(s)` : ''}`,
      running ? `running step ${running.step}/${running.totalSteps}` : 'idle',
      `up ${formatDuration(Date.now() - this.startedAt)}`,
    ];
    return { text: parts.join(' · '), snapshot };
  }

  private logStatus(): void {
    this.statusLine()
      .then(({ snapshot }) =>
        this.log.info(
          {
            model: this.options.engine.modelName,
            provider: this.options.engine.provider,
            queued: snapshot.queuedTotal,
            running: snapshot.running.map((r) => r.job.id),
            guilds: snapshot.guilds,
            uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
          },
          'status',
        ),
      )
      .catch((error: unknown) => this.log.warn({ err: loggableError(error) }, 'could not read the queue status'));
  }

  private track<T>(promise: Promise<T>): void {
    this.inFlight.add(promise);
    promise.finally(() => this.inFlight.delete(promise)).catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Queue events → messages

  private subscribe(): void {
    const { queue } = this.options;
    const withTarget = (job: JobRecord, act: (reply: ReplyTarget) => unknown) => {
      const reply = replyTargetOf(job);
      if (!reply) return; // a job queued by something other than this bot (e.g. a CLI): nothing to show
      this.track(
        Promise.resolve(act(reply)).catch((error: unknown) => this.log.warn({ err: loggableError(error), jobId: job.id }, 'could not update a job message')),
      );
    };
    this.unsubscribe.push(
      queue.on('queued', ({ job, position, restored }) => {
        if (restored) this.log.info({ jobId: job.id, position, status: job.status }, 'job restored after a restart');
        withTarget(job, (reply) => this.presenter.queued(presentedJob(job, reply), position));
      }),
      queue.on('position', ({ job, position }) => withTarget(job, (reply) => this.presenter.queued(presentedJob(job, reply), position))),
      queue.on('started', ({ job }) => {
        this.log.info({ jobId: job.id, guildId: job.owner.guildId, attempt: job.attempts }, 'job started');
        withTarget(job, (reply) => this.presenter.started(presentedJob(job, reply)));
      }),
      queue.on('progress', ({ job, progress }) =>
        withTarget(job, (reply) => {
          const latents = progress.latents;
          this.presenter.progress(presentedJob(job, reply), progress.step, progress.totalSteps, latents?.data, latents?.shape);
        }),
      ),
      queue.on('finished', ({ job, images }) => {
        this.log.info({ jobId: job.id, ms: job.result?.durationMs, images: images.length }, 'job finished');
        withTarget(job, (reply) =>
          this.presenter.finished(presentedJob(job, reply), {
            images: images.map((image) => ({ png: image.png, nsfw: image.nsfw ?? null, seed: image.seed.toString() })),
            elapsedMs: job.result?.durationMs ?? 0,
            modelName: job.result?.model ?? this.options.engine.modelName,
          }),
        );
      }),
      queue.on('failed', ({ job, error }) => {
        this.log.warn({ jobId: job.id, code: error.code, reason: error.message }, 'job failed');
        withTarget(job, (reply) => this.presenter.failed({ id: job.id, reply }, error.message));
      }),
      queue.on('cancelled', ({ job, by }) => {
        this.log.info({ jobId: job.id, by }, 'job cancelled');
        withTarget(job, (reply) => this.presenter.cancelled({ id: job.id, reply }));
      }),
    );
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Interactions

  private async route(interaction: Interaction): Promise<void> {
    try {
      if (interaction.isChatInputCommand()) {
        if (!this.accepting) return void (await this.replyEphemeral(interaction, 'The bot is restarting; try again in a minute.'));
        switch (interaction.commandName) {
          case IMAGINE_COMMAND:
            return await this.onImagine(interaction);
          case QUEUE_COMMAND:
            return await this.onQueue(interaction);
          case SETTINGS_COMMAND:
            return await this.onSettings(interaction);
          case STATUS_COMMAND:
            return await this.onStatus(interaction);
          default:
            return void (await this.replyEphemeral(interaction, 'This command is not known to this bot version.'));
        }
      }
      if (interaction.isButton()) {
        if (!this.accepting) return void (await this.replyEphemeral(interaction, 'The bot is restarting; try again in a minute.'));
        return await this.onButton(interaction);
      }
    } catch (error) {
      this.log.error({ err: loggableError(error), interactionId: interaction.id }, 'interaction failed');
      if (interaction.isRepliable()) await this.replyEphemeral(interaction, userMessage(error) ?? INTERNAL_ERROR).catch(() => undefined);
    }
  }

  private requester(interaction: RepliableInteraction): Requester | undefined {
    if (!interaction.inGuild() || !interaction.guildId || !interaction.channelId) return undefined;
    const member = interaction.member;
    const roleIds = member ? (Array.isArray(member.roles) ? member.roles : [...member.roles.cache.keys()]) : [];
    const channel = interaction.channel;
    // A thread follows its parent channel: the allow-list and the NSFW flag are the parent's.
    const parent = channel?.isThread() ? channel.parent : null;
    const nsfwSource = parent ?? channel;
    const channelNsfw = nsfwSource !== null && 'nsfw' in nsfwSource ? nsfwSource.nsfw === true : false;
    return {
      guildId: interaction.guildId,
      channelId: interaction.channelId,
      ...(channel?.isThread() && channel.parentId ? { parentChannelId: channel.parentId } : {}),
      channelNsfw,
      userId: interaction.user.id,
      roleIds,
      isAdmin: interaction.memberPermissions?.has(PermissionFlagsBits.ManageGuild) === true,
    };
  }

  /** An ephemeral one-sentence answer, whatever state the interaction is in. */
  private async replyEphemeral(interaction: RepliableInteraction, content: string): Promise<void> {
    if (interaction.deferred && !interaction.ephemeral) {
      // A public "thinking…" is already there: remove it and answer privately.
      await interaction.deleteReply().catch(() => undefined);
      await interaction.followUp({ content, flags: MessageFlags.Ephemeral });
    } else if (interaction.deferred || interaction.replied) {
      await interaction.followUp({ content, flags: MessageFlags.Ephemeral });
    } else {
      await interaction.reply({ content, flags: MessageFlags.Ephemeral });
    }
  }

  /**
   * Runs the admission check, then acknowledges: a refusal becomes an ephemeral reply; an accepted request gets a
   * public deferred reply, which becomes the job's message. If the check is slow, the reply is deferred first so
   * Discord's 3-second limit is never missed.
   */
  private async admitThenDefer<T>(interaction: ChatInputCommandInteraction | ButtonInteraction, check: Promise<T>): Promise<{ value: T; replyMessageId?: string } | undefined> {
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
    if (!outcome.ok) {
      const message = userMessage(outcome.error);
      if (!message) throw outcome.error;
      this.log.info({ userId: interaction.user.id, guildId: interaction.guildId, code: (outcome.error as { code?: string }).code }, 'request refused');
      await this.replyEphemeral(interaction, message);
      return undefined;
    }
    if (early !== 'late') {
      const response = await interaction.deferReply({ withResponse: true });
      replyMessageId = response.resource?.message?.id;
    }
    return { value: outcome.value, ...(replyMessageId ? { replyMessageId } : {}) };
  }

  private replyTarget(interaction: RepliableInteraction, receivedAt: number, replyMessageId?: string): ReplyTarget {
    return {
      applicationId: interaction.applicationId,
      interactionToken: interaction.token,
      interactionAt: receivedAt,
      guildId: interaction.guildId,
      channelId: interaction.channelId ?? '',
      requesterId: interaction.user.id,
      ...(replyMessageId ? { replyMessageId } : {}),
    };
  }

  private async onImagine(interaction: ChatInputCommandInteraction): Promise<void> {
    const receivedAt = Date.now();
    const requester = this.requester(interaction);
    if (!requester) return void (await this.replyEphemeral(interaction, '/imagine works in servers only.'));
    const get = interaction.options;
    const options: ImagineOptions = { prompt: get.getString('prompt', true) };
    const negative = get.getString('negative');
    const seed = get.getString('seed');
    const steps = get.getInteger('steps');
    const cfg = get.getNumber('cfg');
    const size = get.getString('size');
    const sampler = get.getString('sampler');
    const count = get.getInteger('count');
    if (negative !== null) options.negative = negative;
    if (seed !== null) options.seed = seed;
    if (steps !== null) options.steps = steps;
    if (cfg !== null) options.cfg = cfg;
    if (size !== null) options.size = size;
    if (sampler !== null) options.sampler = sampler;
    if (count !== null) options.count = count;

    const admitted = await this.admitThenDefer(interaction, this.options.rules.check(requester, options));
    if (!admitted) return;
    this.log.debug({ interactionId: interaction.id, ms: Date.now() - receivedAt }, 'request admitted and acknowledged');
    await this.enqueue(interaction, requester, admitted.value.params, receivedAt, admitted.replyMessageId, admitted.value.notes);
  }

  private async enqueue(
    interaction: ChatInputCommandInteraction | ButtonInteraction,
    requester: Requester,
    params: JobParams,
    receivedAt: number,
    replyMessageId: string | undefined,
    notes: string[],
    parentId?: string,
  ): Promise<void> {
    const reply = this.replyTarget(interaction, receivedAt, replyMessageId);
    try {
      const standing = await this.options.rules.submit(requester, params, {
        ...(parentId ? { parentId } : {}),
        meta: { reply: targetToJson(reply), channelNsfw: requester.channelNsfw },
      });
      this.log.info({ jobId: standing.job.id, guildId: requester.guildId, userId: requester.userId, position: standing.position, parentId, ms: Date.now() - receivedAt }, 'job queued');
      if (notes.length > 0) await interaction.followUp({ content: notes.join(' '), flags: MessageFlags.Ephemeral }).catch(() => undefined);
    } catch (error) {
      const message = userMessage(error);
      if (!message) throw error;
      await this.replyEphemeral(interaction, message);
    }
  }

  private async onButton(interaction: ButtonInteraction): Promise<void> {
    const receivedAt = Date.now();
    const decoded = decodeCustomId(interaction.customId);
    if (!decoded) return void (await this.replyEphemeral(interaction, 'This button belongs to an older version of the bot.'));
    const { action, jobId } = decoded;
    const job = await this.options.queue.getJob(jobId);
    if (!job) return void (await this.replyEphemeral(interaction, 'This job is no longer stored, so its buttons no longer work.'));
    const requester = this.requester(interaction);
    if (!requester) return void (await this.replyEphemeral(interaction, 'Buttons work in servers only.'));
    const allowed = job.owner.userId === requester.userId || requester.isAdmin;
    const log = this.log.child({ jobId, action, userId: requester.userId });

    switch (action) {
      case 'cancel': {
        if (!allowed) return void (await this.replyEphemeral(interaction, NOT_YOURS));
        if (job.status !== 'queued' && job.status !== 'running') return void (await this.replyEphemeral(interaction, 'This job has already ended.'));
        await interaction.deferUpdate();
        try {
          await this.options.queue.cancel(jobId, { userId: requester.userId, isAdmin: requester.isAdmin });
          log.info('cancel requested');
        } catch (error) {
          if (error instanceof NotYourJobError) return void (await this.replyEphemeral(interaction, NOT_YOURS));
          const message = userMessage(error);
          if (!message) throw error;
          await this.replyEphemeral(interaction, message);
        }
        return;
      }
      case 'delete': {
        if (!allowed) return void (await this.replyEphemeral(interaction, NOT_YOURS));
        if (job.status === 'queued' || job.status === 'running') {
          await this.options.queue.cancel(jobId, { userId: requester.userId, isAdmin: requester.isAdmin }).catch(() => undefined);
        }
        await interaction.deferUpdate();
        await interaction.deleteReply();
        log.info('job message deleted');
        return;
      }
      case 'reroll':
      case 'same': {
        // Re-roll: the same settings with a fresh seed; same seed: exactly the stored parameters.
        const wanted = action === 'same' ? job.params : { ...job.params, seed: randomSeed().toString() };
        const admitted = await this.admitThenDefer(interaction, this.options.rules.checkParams(requester, wanted));
        if (!admitted) return;
        const params = admitted.value.params;
        await this.enqueue(interaction, requester, params, receivedAt, admitted.replyMessageId, admitted.value.notes, jobId);
        return;
      }
    }
  }

  private async onQueue(interaction: ChatInputCommandInteraction): Promise<void> {
    const snapshot = await this.options.queue.snapshot(interaction.user.id);
    const lines: string[] = [];
    const running = snapshot.running[0];
    lines.push(running ? `Now generating: a job of <@${running.job.owner.userId}> (step ${running.step}/${running.totalSteps}).` : 'Nothing is generating right now.');
    const here = snapshot.guilds.find((g) => g.guildId === interaction.guildId);
    lines.push(`Waiting: ${here?.queued ?? 0} job(s) in this server, ${snapshot.queuedTotal} in all.`);
    const mine = snapshot.user.filter((standing) => standing.job.owner.guildId === interaction.guildId || !interaction.guildId);
    if (mine.length === 0) lines.push('You have no jobs waiting.');
    for (const standing of mine) {
      const where = standing.position === 0 ? 'running now' : `position ${standing.position}`;
      const prompt = standing.job.params.prompt.length > 60 ? `${standing.job.params.prompt.slice(0, 59)}…` : standing.job.params.prompt;
      lines.push(`• \`${standing.job.id}\` ${where}: ${prompt}`);
    }
    await interaction.reply({ content: lines.join('\n'), flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
  }

  private async onStatus(interaction: ChatInputCommandInteraction): Promise<void> {
    const { text } = await this.statusLine();
    // The workers behind the queue: the Redis backend's fleet, or the local backend's one in-process worker.
    const fleet = this.options.queue.workers ? fleetStatusLines(await this.options.queue.workers(), Date.now()) : [];
    await interaction.reply({ content: [`🖼️ ${text}`, ...fleet].join('\n'), flags: MessageFlags.Ephemeral });
  }

  private async onSettings(interaction: ChatInputCommandInteraction): Promise<void> {
    const requester = this.requester(interaction);
    if (!requester) return void (await this.replyEphemeral(interaction, 'Settings exist per server only.'));
    // Checked here as well as by default_member_permissions: server owners can open the command to anyone.
    if (!requester.isAdmin) {
      this.log.info({ userId: requester.userId, guildId: requester.guildId }, 'settings refused: not an admin');
      return void (await this.replyEphemeral(interaction, NOT_ADMIN));
    }
    const subcommand = interaction.options.getSubcommand(true);
    const values: Record<string, string | number | boolean | undefined> = {};
    for (const option of interaction.options.data[0]?.options ?? []) {
      values[option.name] = option.channel?.id ?? option.role?.id ?? (option.value as string | number | boolean | undefined);
    }
    try {
      const reply = await this.options.rules.applySettings(requester.guildId, requester.userId, subcommand, values);
      this.log.info({ guildId: requester.guildId, userId: requester.userId, subcommand, values }, 'settings changed');
      await interaction.reply({ content: reply.content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
    } catch (error) {
      const message = userMessage(error);
      if (!message) throw error;
      await this.replyEphemeral(interaction, message);
    }
  }
}
