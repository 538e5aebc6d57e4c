/**
 * What a new owner reads instead of a stack trace: how to create the Discord application and invite the bot when
 * there is no token, and how to get a model when there is none. `start` prints these; `doctor` points at them.
 */
import { PermissionFlagsBits } from 'discord-api-types/v10';

/**
 * What the bot needs in a channel: see it, answer in it, attach the PNGs, embed the job card, and read the message
 * history (to edit its own replies and to find the message a re-roll button belongs to).
 */
export const BOT_PERMISSIONS: bigint =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.ReadMessageHistory;

/** `bot` puts the bot user in the guild; `applications.commands` lets it register slash commands there. */
export const BOT_SCOPES = ['bot', 'applications.commands'] as const;

export const DEVELOPER_PORTAL = 'https://discord.com/developers/applications';

/** The OAuth2 URL a guild admin opens to add the bot, with the scopes and permissions above. */
export function inviteUrl(appId: string): string {
  const query = new URLSearchParams({ client_id: appId, scope: BOT_SCOPES.join(' '), permissions: BOT_PERMISSIONS.toString() });
  return `https://discord.com/oauth2/authorize?${query.toString()}`;
}

export interface FirstRunGuideOptions {
  /** DISCORD_APP_ID, when the owner already set it: the invite URL is then ready to open. */
  appId?: string | undefined;
  /** Where the .env file is (for the text), default ".env". */
  envFile?: string;
}

/** The guide `start` prints when DISCORD_TOKEN is not set. */
export function firstRunGuide(options: FirstRunGuideOptions = {}): string {
  const envFile = options.envFile ?? '.env';
  const invite = options.appId ? inviteUrl(options.appId) : inviteUrl('YOUR_APP_ID').replace('YOUR_APP_ID', '<DISCORD_APP_ID>');
  return [
    'Imagine needs a Discord bot token before it can start. One-time setup:',
    '',
    `  1. Create an application at ${DEVELOPER_PORTAL} (New Application).`,
    '  2. On its Bot page, press Reset Token and copy the token.',
    '     (No privileged intents are needed: Imagine only uses slash commands and buttons.)',
    `  3. Put the token and the application id (General Information → Application ID) into ${envFile}:`,
    `       cp .env.example ${envFile}     # once`,
    '       DISCORD_TOKEN=<the bot token>',
    '       DISCORD_APP_ID=<the application id>',
    '     The token is a password: never commit it or paste it in a chat.',
    `  4. Invite the bot to your server (scopes: ${BOT_SCOPES.join(' ')}; permissions ${BOT_PERMISSIONS}:`,
    '     View Channel, Send Messages, Embed Links, Attach Files, Read Message History):',
    `       ${invite}`,
    '  5. Register the slash commands, then start the bot:',
    '       imagine-bot deploy-commands',
    '       imagine-bot start',
    '',
    'Check everything at any time with: imagine-bot doctor',
  ].join('\n');
}

export interface MissingModelGuideOptions {
  /** Why the configured model could not be used (the resolver's one-line error), if one was configured. */
  problem?: string | undefined;
}

/** The guide `start` prints when no usable model is configured. */
export function missingModelGuide(options: MissingModelGuideOptions = {}): string {
  return [
    options.problem ? `No usable model: ${options.problem}` : 'No model configured yet.',
    '',
    'Imagine runs Stable Diffusion 1.5 models in the diffusers ONNX layout (model_index.json, text_encoder/, unet/,',
    'vae_decoder/, tokenizer/, scheduler/ …). Either:',
    '',
    '  • Pull one from the Hugging Face Hub into its cache (resumable; HF_TOKEN for gated repos), for example:',
    '      imagine-bot models pull nmkd/stable-diffusion-1.5-onnx-fp16',
    '    then set IMAGINE_MODEL=nmkd/stable-diffusion-1.5-onnx-fp16 in .env (docs/operations.md lists other repos).',
    '',
    '  • Or export one yourself and point IMAGINE_MODEL at the folder:',
    '      optimum-cli export onnx --model stable-diffusion-v1-5/stable-diffusion-v1-5 ./models/sd15-onnx',
    '      IMAGINE_MODEL=./models/sd15-onnx',
    '',
    'See what is in the cache with: imagine-bot models list',
  ].join('\n');
}
