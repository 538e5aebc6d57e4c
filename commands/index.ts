/**
 * Imagine's slash commands as data, in the exact JSON shape Discord's bulk-overwrite endpoint takes
 * (`RESTPostAPIChatInputApplicationCommandsJSONBody`). `imagine-bot deploy-commands` sends them as they are, and the
 * bot registers them the same way at start. Only the parts that depend on the configuration (sizes, samplers, limits)
 * are filled in by `buildCommandDefinitions`.
 *
 * Each definition is `as const satisfies CommandDefinition`: Discord's type checks its shape, and its literal type
 * (option names, option types, which are required) stays known, so the bot's option reader (src/discord/options.ts)
 * infers what each handler receives from the definition itself.
 */
import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ApplicationIntegrationType,
  ChannelType,
  InteractionContextType,
  PermissionFlagsBits,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord-api-types/v10';
import { sizeLabel } from '../src/util/format.js';

export type CommandDefinition = RESTPostAPIChatInputApplicationCommandsJSONBody;

export const IMAGINE_COMMAND = 'imagine';
export const QUEUE_COMMAND = 'imagine-queue';
export const SETTINGS_COMMAND = 'imagine-settings';
export const STATUS_COMMAND = 'imagine-status';
export const INFO_COMMAND = 'imagine-info';

/** img2img strength bounds offered in /imagine (the engine takes (0, 1]). */
export const MIN_STRENGTH = 0.01;
export const MAX_STRENGTH = 1;
export const LORAS_COMMAND = 'imagine-loras';

export interface CommandLimits {
  /** Sizes offered in /imagine's `size` choice, e.g. "512x512" (at most 25: Discord's limit on choices). */
  sizes: readonly string[];
  /** Samplers offered in `sampler`: the value the engine takes and the name people know it by. */
  samplers: ReadonlyArray<{ value: string; label: string }>;
  /** Ceilings the Discord client enforces before a request reaches us; guild settings may be stricter. */
  maxSteps: number;
  maxCfg: number;
  maxCount: number;
  /** Offer /imagine-loras (registered only where a LoRA folder is configured: model.loraDir). */
  loras?: boolean;
}

/** The largest seed the engine takes, as text (a 64-bit seed does not fit Discord's integer options). */
const MAX_SEED_DIGITS = 20;

/** Commands work in guilds only: queues, limits and settings are per guild. */
const GUILD_ONLY: Pick<CommandDefinition, 'contexts' | 'integration_types'> = {
  contexts: [InteractionContextType.Guild],
  integration_types: [ApplicationIntegrationType.GuildInstall],
};

const MANAGE_GUILD = PermissionFlagsBits.ManageGuild.toString();


/** Clip skip 1 or 2, for /imagine's option and the server default of /imagine-settings. */
const CLIP_SKIP_CHOICES = () => [
  { name: '1', value: 1 },
  { name: '2', value: 2 },
];

export function imagineCommand(limits: CommandLimits) {
  return {
    type: ApplicationCommandType.ChatInput,
    name: IMAGINE_COMMAND,
    description: 'Generate images from a text prompt with Stable Diffusion',
    ...GUILD_ONLY,
    options: [
      { type: ApplicationCommandOptionType.String, name: 'prompt', description: 'What to draw', required: true, min_length: 1, max_length: 1000 },
      { type: ApplicationCommandOptionType.String, name: 'negative', description: 'What to keep out of the image', max_length: 1000 },
      {
        type: ApplicationCommandOptionType.String,
        name: 'seed',
        description: 'Seed (a whole number ≥ 0, or -1 for random); the same seed and settings give the same image',
        min_length: 1,
        max_length: MAX_SEED_DIGITS,
      },
      { type: ApplicationCommandOptionType.Integer, name: 'steps', description: `Denoising steps (1–${limits.maxSteps})`, min_value: 1, max_value: limits.maxSteps },
      { type: ApplicationCommandOptionType.Number, name: 'cfg', description: `Guidance scale: how closely to follow the prompt (0–${limits.maxCfg})`, min_value: 0, max_value: limits.maxCfg },
      {
        type: ApplicationCommandOptionType.String,
        name: 'size',
        description: 'Image size (width × height)',
        choices: limits.sizes.slice(0, 25).map((size) => ({ name: sizeLabel(size), value: size })),
      },
      {
        type: ApplicationCommandOptionType.String,
        name: 'sampler',
        description: 'Sampler (scheduler)',
        choices: limits.samplers.slice(0, 25).map((sampler) => ({ name: sampler.label, value: sampler.value })),
      },
      { type: ApplicationCommandOptionType.Integer, name: 'count', description: `Images to make (1–${limits.maxCount})`, min_value: 1, max_value: limits.maxCount },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'clip-skip',
        description: 'Clip skip: 1 = the text encoder’s last layer, 2 = the one before it (default: this server’s)',
        choices: CLIP_SKIP_CHOICES(),
      },
      { type: ApplicationCommandOptionType.Attachment, name: 'image', description: 'Start from this image (PNG, JPEG or WebP, up to 10 MiB): img2img' },
      {
        type: ApplicationCommandOptionType.Number,
        name: 'strength',
        description: 'With an image: how much to repaint (0.01 keeps it, 1 repaints all; default 0.75)',
        min_value: MIN_STRENGTH,
        max_value: MAX_STRENGTH,
      },
    ],
  } as const satisfies CommandDefinition;
}

export function queueCommand() {
  return {
    type: ApplicationCommandType.ChatInput,
    name: QUEUE_COMMAND,
    description: 'Your jobs and their places in the queue, and what is generating now',
    ...GUILD_ONLY,
  } as const satisfies CommandDefinition;
}

export function statusCommand() {
  return {
    type: ApplicationCommandType.ChatInput,
    name: STATUS_COMMAND,
    description: 'Model, provider, queue lengths and uptime of the image bot',
    ...GUILD_ONLY,
  } as const satisfies CommandDefinition;
}

export function infoCommand() {
  return {
    type: ApplicationCommandType.ChatInput,
    name: INFO_COMMAND,
    description: 'All parameters of a job, and the job it was made from',
    ...GUILD_ONLY,
    options: [
      {
        type: ApplicationCommandOptionType.String,
        name: 'job',
        description: 'The job id (ⓘ shows it), or a link to the job’s message',
        required: true,
        min_length: 1,
        max_length: 200,
      },
    ],
  } as const satisfies CommandDefinition;
}

export function lorasCommand() {
  return {
    type: ApplicationCommandType.ChatInput,
    name: LORAS_COMMAND,
    description: 'The LoRAs you can use in a prompt as <lora:name:0.8>, with size and hash',
    ...GUILD_ONLY,
  } as const satisfies CommandDefinition;
}

const ACTION_CHOICES = (actions: readonly string[]) => actions.map((action) => ({ name: action, value: action }));

export function settingsCommand() {
  const sub = ApplicationCommandOptionType.Subcommand;
  const int = ApplicationCommandOptionType.Integer;
  return {
    type: ApplicationCommandType.ChatInput,
    name: SETTINGS_COMMAND,
    description: 'Server settings for /imagine: rate limits, queue, limits, channels, NSFW, blocklist',
    ...GUILD_ONLY,
    // Hidden from members without Manage Guild by default; the bot checks the permission again itself, because a
    // server owner can loosen this in Integrations settings.
    default_member_permissions: MANAGE_GUILD,
    options: [
      { type: sub, name: 'show', description: 'Show this server’s settings' },
      {
        type: sub,
        name: 'rate-limit',
        description: 'Per-user rate limits (0 = no limit)',
        options: [
          { type: int, name: 'jobs', description: 'Jobs per user per window', min_value: 0, max_value: 1000 },
          { type: int, name: 'minutes', description: 'Length of the window in minutes', min_value: 1, max_value: 1440 },
          { type: int, name: 'cooldown', description: 'Seconds a user waits between two jobs', min_value: 0, max_value: 86400 },
          { type: int, name: 'daily', description: 'Jobs per user per UTC day', min_value: 0, max_value: 10000 },
        ],
      },
      {
        type: sub,
        name: 'queue',
        description: 'How many jobs may wait at once (0 = no limit)',
        options: [
          { type: int, name: 'per-user', description: 'Jobs one user may have queued or running', min_value: 0, max_value: 100 },
          { type: int, name: 'per-guild', description: 'Jobs this server may have queued or running', min_value: 0, max_value: 1000 },
        ],
      },
      {
        type: sub,
        name: 'limits',
        description: 'Largest requests members may make',
        options: [
          { type: int, name: 'max-steps', description: 'Most denoising steps', min_value: 1, max_value: 150 },
          { type: int, name: 'max-count', description: 'Most images per request', min_value: 1, max_value: 4 },
          { type: ApplicationCommandOptionType.Number, name: 'max-cfg', description: 'Largest guidance scale', min_value: 1, max_value: 30 },
          { type: ApplicationCommandOptionType.String, name: 'sizes', description: 'Allowed sizes, comma-separated, e.g. 512x512,512x768', max_length: 500 },
        ],
      },
      {
        type: sub,
        name: 'channels',
        description: 'Channels where /imagine works (empty list = everywhere)',
        options: [
          { type: ApplicationCommandOptionType.String, name: 'action', description: 'What to do', required: true, choices: ACTION_CHOICES(['add', 'remove', 'clear']) },
          { type: ApplicationCommandOptionType.Channel, name: 'channel', description: 'The channel', channel_types: [ChannelType.GuildText] },
        ],
      },
      {
        type: sub,
        name: 'nsfw',
        description: 'What happens to images the safety checker flags in non-NSFW channels',
        options: [
          { type: ApplicationCommandOptionType.String, name: 'policy', description: 'spoiler, blur or withhold', choices: ACTION_CHOICES(['spoiler', 'blur', 'withhold']) },
          { type: ApplicationCommandOptionType.Boolean, name: 'check-nsfw-channels', description: 'Also run the checker in NSFW channels' },
        ],
      },
      {
        type: sub,
        name: 'negative',
        description: 'A negative prompt added to every job (leave empty to remove it)',
        options: [{ type: ApplicationCommandOptionType.String, name: 'text', description: 'The default negative prompt', max_length: 1000 }],
      },
      {
        type: sub,
        name: 'clip-skip',
        description: 'The clip skip of jobs that do not choose one (/imagine’s clip-skip option overrides it)',
        options: [
          {
            type: int,
            name: 'value',
            description: '1 = the text encoder’s last layer, 2 = the one before it (some anime models want 2)',
            required: true,
            choices: CLIP_SKIP_CHOICES(),
          },
        ],
      },
      {
        type: sub,
        name: 'blocklist',
        description: 'Words or /regexes/ refused in prompts',
        options: [
          { type: ApplicationCommandOptionType.String, name: 'action', description: 'What to do', required: true, choices: ACTION_CHOICES(['add', 'remove', 'clear']) },
          { type: ApplicationCommandOptionType.String, name: 'pattern', description: 'A word, or a regex written as /…/', max_length: 200 },
        ],
      },
      {
        type: sub,
        name: 'roles',
        description: 'Roles exempt from rate limits',
        options: [
          { type: ApplicationCommandOptionType.String, name: 'action', description: 'What to do', required: true, choices: ACTION_CHOICES(['add', 'remove', 'clear']) },
          { type: ApplicationCommandOptionType.Role, name: 'role', description: 'The role' },
        ],
      },
      { type: sub, name: 'reset', description: 'Put every setting back to the defaults' },
    ],
  } as const satisfies CommandDefinition;
}

/** Every command the bot serves, by role, each with its literal type (the bot reads options through these). */
export function buildCommands(limits: CommandLimits) {
  return { imagine: imagineCommand(limits), queue: queueCommand(), settings: settingsCommand(), status: statusCommand(), info: infoCommand(), loras: lorasCommand(), offersLoras: limits.loras ?? false };
}

export type ImagineCommands = ReturnType<typeof buildCommands>;

/** The commands as the array `PUT /applications/{app}/commands` takes. */
export function commandDefinitionsOf(commands: ImagineCommands): CommandDefinition[] {
  return [commands.imagine, commands.queue, commands.settings, commands.status, commands.info, ...(commands.offersLoras ? [commands.loras] : [])];
}

/** Every command the bot serves, ready for `PUT /applications/{app}/commands`. */
export function buildCommandDefinitions(limits: CommandLimits): CommandDefinition[] {
  return commandDefinitionsOf(buildCommands(limits));
}
