/**
 * The Discord bot: the discord.js client's life (start, stop, status line), with interactions handed to the router
 * (router.ts → handlers/) and queue events to the presenter (queue-events.ts → presenter.ts). It holds no job state
 * of its own: everything a click or a restart needs is in the job store.
 */
import { join } from 'node:path';
import { hostname } from 'node:os';
import { Client, Events, GatewayIntentBits, Status } from 'discord.js';
import type { Keyv } from 'keyv';
import { commandDefinitionsOf, IMAGINE_COMMAND, INFO_COMMAND, LORAS_COMMAND, QUEUE_COMMAND, SETTINGS_COMMAND, STATUS_COMMAND, type ImagineCommands } from '../../commands/index.js';
import { ConfigError, type Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { extractExtraNetworks, LatentPreviewRenderer, LoraLibrary, shortLoraHash, type InputImageStore, type JobQueue, type QueueSnapshot, type ShardInfo, type ShardReport } from '../queue/index.js';
import { formatDuration } from '../util/format.js';
import type { GuildRules } from './backend.js';
import { commandsFor, deployCommands } from './command-data.js';
import { loggableError } from './errors.js';
import { handleButton, handleModal } from './handlers/buttons.js';
import { handleInfo } from './handlers/info.js';
import type { HandlerContext } from './handlers/context.js';
import { handleImagine } from './handlers/imagine.js';
import { handleQueue } from './handlers/queue.js';
import { handleSettings } from './handlers/settings.js';
import { handleStatus } from './handlers/status.js';
import { handleLoras } from './handlers/loras.js';
import { replyTargetToJson } from './interaction.js';
import { JobPresenter } from './presenter.js';
import { subscribeQueueEvents } from './queue-events.js';
import { createRouter } from './router.js';
import { DeliveryOutbox } from './delivery.js';
import { clientShardOptions, shardPlanOf } from './shards.js';

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
  /** The store's `deliveries` namespace: the outbox of acknowledged interactions and their outcomes. */
  deliveries: Keyv;
  /** Where img2img starting images are stored for the engine (the queue backend's InputImageStore). */
  inputImages: InputImageStore;
  /**
   * Register the commands at start (bulk overwrite: unchanged commands keep their ids), from the same definitions the
   * handlers read their options through.
   */
  registerCommands?: boolean;
  /** How often the status line is logged; default 5 minutes. */
  statusLogIntervalMs?: number;
  /** How often this process reports its shards to the queue backend (`JobQueue.reportShards`); default 5 s. */
  shardReportIntervalMs?: number;
}

export class ImagineBot {
  readonly client: Client;
  readonly presenter: JobPresenter;
  readonly outbox: DeliveryOutbox;
  /** Live previews: through the TAESD decoder `model.previewDecoder` names, else (or once it fails) the colour map. */
  readonly previews: LatentPreviewRenderer;
  private readonly log: Logger;
  private accepting = false;
  private readonly startedAt = Date.now();
  private statusTimer: NodeJS.Timeout | null = null;
  private shardTimer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly route: ReturnType<typeof createRouter>;
  private readonly commands: ImagineCommands;

  constructor(private readonly options: BotOptions) {
    const { config } = options;
    this.log = options.log.child({ module: 'discord' });
    this.client = new Client({
      // Slash commands and buttons need no privileged intents; Guilds gives channel NSFW flags and member roles.
      intents: [GatewayIntentBits.Guilds],
      // All shards, as many as Discord recommends, or this process's share of them (discord.shards / shardCount).
      ...clientShardOptions(shardPlanOf(config.discord)),
      rest: { api: config.discord.apiBase, cdn: config.discord.cdnBase, version: '10' },
      allowedMentions: { parse: [] },
    });
    this.previews = new LatentPreviewRenderer({
      decoderPath: config.model.previewDecoder,
      provider: config.model.provider,
      onOpen: (file, provider) => this.log.info({ file, provider }, 'previews decode through TAESD'),
      onFallback: (reason, error) => this.log.warn({ err: loggableError(error) }, reason),
    });
    this.presenter = new JobPresenter({
      rest: this.client.rest,
      log: this.log,
      preview: config.preview,
      encodePreview: (latents, shape, options) => this.previews.encodeBatch(latents, shape, options),
      safetyPolicy: async (guildId) => (guildId ? options.rules.safety(guildId) : config.safety),
      saveReplyTarget: async (jobId, target) => {
        await options.queue.updateMeta(jobId, { reply: replyTargetToJson(target) });
      },
    });
    this.outbox = new DeliveryOutbox({
      keyv: options.deliveries,
      resultsDir: join(config.storage.dataDir, 'results'),
      keepFinishedMs: config.delivery.keepFinishedHours * 3600_000,
      presenter: this.presenter,
      queue: options.queue,
      rules: options.rules,
      log: this.log.child({ module: 'delivery' }),
      modelName: options.engine.modelName,
    });
    this.commands = commandsFor(config);
    const loraLibrary = new LoraLibrary(config.model.loraDir || null);
    const context: HandlerContext = {
      log: this.log,
      queue: options.queue,
      rules: options.rules,
      outbox: this.outbox,
      inputImages: options.inputImages,
      commands: this.commands,
      statusLine: async () => (await this.statusLine()).text,
      shards: () => (options.queue.shards ? options.queue.shards() : Promise.resolve(this.localShards())),
      loras: async () => {
        const files = await loraLibrary.list();
        return Promise.all(files.map(async (file) => ({ name: file.name, bytes: file.bytes, hash: shortLoraHash(await loraLibrary.hash(file.file)) })));
      },
      checkLoras: async ({ prompt, promptSyntax }) => {
        // The engine reads tags under a1111 only (absent: the engine's default, plain).
        if (promptSyntax !== 'a1111') return;
        for (const tag of extractExtraNetworks(prompt).loras) await loraLibrary.resolve(tag.name);
      },
    };
    this.route = createRouter({
      log: this.log,
      context,
      commands: { [IMAGINE_COMMAND]: handleImagine, [QUEUE_COMMAND]: handleQueue, [SETTINGS_COMMAND]: handleSettings, [STATUS_COMMAND]: handleStatus, [INFO_COMMAND]: handleInfo, [LORAS_COMMAND]: handleLoras },
      button: handleButton,
      modal: handleModal,
      accepting: () => this.accepting,
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
    this.unsubscribe.push(
      ...subscribeQueueEvents({ queue, presenter: this.presenter, outbox: this.outbox, log: this.log, track: (work) => this.track(work) }),
    );
    // Pending deliveries first, so the jobs the queue restores find their records; then what is owed is sent.
    await this.outbox.load();
    await queue.start();
    await this.outbox.resume();
    this.accepting = true;

    this.client.on(Events.InteractionCreate, (interaction) => this.track(this.route(interaction)));
    this.client.on(Events.Error, (error) => this.log.error({ err: loggableError(error) }, 'discord client error'));
    this.client.on(Events.ShardDisconnect, (event, shardId) => {
      this.log.warn({ code: event.code, shardId }, 'gateway disconnected');
      this.reportShards();
    });
    this.client.on(Events.ShardReconnecting, (shardId) => this.log.info({ shardId }, 'gateway reconnecting'));
    this.client.on(Events.ShardReady, () => this.reportShards());
    this.client.on(Events.ShardResume, (shardId, replayed) => {
      this.log.info({ shardId, replayed }, 'gateway session resumed');
      this.reportShards();
    });
    const ready = new Promise<void>((resolve) => this.client.once(Events.ClientReady, () => resolve()));
    await this.client.login(config.discord.token);
    await ready;
    this.log.info(
      { user: this.client.user?.tag, guilds: this.client.guilds.cache.size, shards: [...this.client.ws.shards.keys()], shardCount: this.client.options.shardCount },
      'connected to Discord',
    );
    this.reportShards();
    this.shardTimer = setInterval(() => this.reportShards(), this.options.shardReportIntervalMs ?? 5000);
    this.shardTimer.unref();

    if (this.options.registerCommands && config.discord.appId) {
      const result = await deployCommands(this.client.rest, config.discord.appId, commandDefinitionsOf(this.commands), config.discord.devGuildId);
      this.log.info({ scope: result.scope, commands: result.names }, 'slash commands registered');
    }
    this.logStatus();
    this.statusTimer = setInterval(() => this.logStatus(), this.options.statusLogIntervalMs ?? 5 * 60_000);
    this.statusTimer.unref();
  }

  /**
   * Graceful stop: refuse new work, stop the queue (a running job finishes within the queue's shutdown grace, else is
   * interrupted and stays persisted, so the next start runs it again), let pending message edits go out, close the
   * gateway.
   */
  async stop(): Promise<void> {
    this.accepting = false;
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.statusTimer = null;
    if (this.shardTimer) clearInterval(this.shardTimer);
    this.shardTimer = null;
    // No new jobs start after this; a running job finishes within the grace or stays persisted for the next start.
    await this.options.queue.close();
    // Interactions being answered and results being posted (a job that finished just before) complete first.
    await Promise.allSettled([...this.inFlight]);
    await this.outbox.close();
    await this.presenter.closeAll();
    await this.previews.release();
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

  /** This process's shards as they are now: id, guilds, gateway ping, whether the session is up. */
  private shardReports(): ShardReport[] {
    const count = this.client.options.shardCount ?? 1;
    return [...this.client.ws.shards.values()].map((shard) => ({
      id: shard.id,
      count,
      guilds: this.client.guilds.cache.filter((guild) => guild.shardId === shard.id).size,
      pingMs: shard.ping >= 0 ? Math.round(shard.ping) : null,
      connected: shard.status === Status.Ready,
    }));
  }

  private localShards(): ShardInfo[] {
    const now = Date.now();
    return this.shardReports().map((shard) => ({ ...shard, host: hostname(), pid: process.pid, state: 'live', lastHeartbeat: now }));
  }

  /** Publishes this process's shards where the other bot processes' /imagine-status reads them (Redis backend). */
  private reportShards(): void {
    const { queue } = this.options;
    if (!queue.reportShards || !this.client.isReady()) return;
    queue.reportShards(this.shardReports()).catch((error: unknown) => this.log.warn({ err: loggableError(error) }, 'could not report the shards'));
  }

  /** Counts work as in flight until it settles, so `stop` waits for it. */
  private track(work: Promise<unknown>): void {
    this.inFlight.add(work);
    work.finally(() => this.inFlight.delete(work)).catch(() => undefined);
  }
}
