/**
 * What the bot's messages look like, as plain Discord API payloads (no discord.js builders): the queued line, the
 * progress line with its bar, the finished embed and the buttons. Pure functions, so every state renders the same
 * way before and after a restart.
 */
import { ButtonStyle, ComponentType, type APIActionRowComponent, type APIButtonComponent, type APIEmbed } from 'discord-api-types/v10';
import type { JobLineage, JobRelation } from '../queue/index.js';
import { formatDuration, progressBar } from '../util/format.js';

/**
 * What a button does. The custom_id holds only this, the job id and, for the image buttons, which image (1-based);
 * everything else comes from the job store, so a button works after a restart.
 *
 * - `upscale` (U1…U4, "Upscale ×2"): hires fix of that image: ×2 with Lanczos, then img2img at 0.5, same seed;
 * - `vary` (V1…V4, "Vary (subtle)") and `vary-strong` ("Vary (strong)"): img2img of that image with a new seed;
 * - `remix`: a modal with the prompt and negative prompt to edit, then a new job with the same settings;
 * - `info` (ⓘ): the job's full parameters and where it comes from, ephemerally.
 */
export const BUTTON_ACTIONS = ['reroll', 'same', 'cancel', 'delete', 'upscale', 'vary', 'vary-strong', 'remix', 'info'] as const;
export type ButtonAction = (typeof BUTTON_ACTIONS)[number];

const CUSTOM_ID_PREFIX = 'imagine';

/** Discord allows at most 5 buttons in a row (and 5 rows): one row of U1…U4 and one of V1…V4 hold a 4-image job. */
export const MAX_IMAGE_BUTTONS = 4;

export function encodeCustomId(action: ButtonAction, jobId: string, image?: number): string {
  return image === undefined ? `${CUSTOM_ID_PREFIX}:${action}:${jobId}` : `${CUSTOM_ID_PREFIX}:${action}:${jobId}:${image}`;
}

export function decodeCustomId(customId: string): { action: ButtonAction; jobId: string; image?: number } | undefined {
  const [prefix, action, jobId, image, ...rest] = customId.split(':');
  if (prefix !== CUSTOM_ID_PREFIX || !jobId || rest.length > 0) return undefined;
  if (!(BUTTON_ACTIONS as readonly string[]).includes(action ?? '')) return undefined;
  if (image === undefined) return { action: action as ButtonAction, jobId };
  const index = Number(image);
  if (!/^[1-9]\d*$/.test(image) || !Number.isSafeInteger(index)) return undefined;
  return { action: action as ButtonAction, jobId, image: index };
}

function button(
  action: ButtonAction,
  jobId: string,
  label: string,
  emoji: string | undefined,
  style: ButtonStyle.Primary | ButtonStyle.Secondary | ButtonStyle.Danger,
  image?: number,
): APIButtonComponent {
  return { type: ComponentType.Button, custom_id: encodeCustomId(action, jobId, image), label, ...(emoji ? { emoji: { name: emoji } } : {}), style };
}

type ActionRow = APIActionRowComponent<APIButtonComponent>;

const row = (components: APIButtonComponent[]): ActionRow => ({ type: ComponentType.ActionRow, components });

/** While a job waits or runs: only ❌ Cancel. */
export function pendingButtons(jobId: string): ActionRow[] {
  return [row([button('cancel', jobId, 'Cancel', '❌', ButtonStyle.Danger)])];
}

/**
 * Under a finished (or failed) job. With images: one image gets Upscale ×2, Vary (subtle), Vary (strong) and Remix;
 * several get a row U1…Un and a row V1…Vn (and Remix joins the last row). Then 🔄 Re-roll, ♻️ Same seed, ⓘ and
 * 🗑 Delete. At most 3 rows of at most 5 buttons: inside Discord's 5 × 5.
 */
export function finishedButtons(jobId: string, options: { canRetry?: boolean; images?: number } = {}): ActionRow[] {
  const canRetry = options.canRetry !== false;
  const images = Math.min(MAX_IMAGE_BUTTONS, Math.max(0, options.images ?? 0));
  const rows: ActionRow[] = [];
  if (canRetry && images === 1) {
    rows.push(
      row([
        button('upscale', jobId, 'Upscale ×2', '🔍', ButtonStyle.Secondary, 1),
        button('vary', jobId, 'Vary (subtle)', '🪄', ButtonStyle.Secondary, 1),
        button('vary-strong', jobId, 'Vary (strong)', '🌀', ButtonStyle.Secondary, 1),
        button('remix', jobId, 'Remix', '✏️', ButtonStyle.Secondary),
      ]),
    );
  } else if (canRetry && images > 1) {
    const numbers = Array.from({ length: images }, (_, i) => i + 1);
    rows.push(row(numbers.map((n) => button('upscale', jobId, `U${n}`, undefined, ButtonStyle.Secondary, n))));
    rows.push(row(numbers.map((n) => button('vary', jobId, `V${n}`, undefined, ButtonStyle.Secondary, n))));
  }
  const last: APIButtonComponent[] = [];
  if (canRetry) {
    last.push(button('reroll', jobId, 'Re-roll', '🔄', ButtonStyle.Primary));
    last.push(button('same', jobId, 'Same seed', '♻️', ButtonStyle.Secondary));
    if (images > 1) last.push(button('remix', jobId, 'Remix', '✏️', ButtonStyle.Secondary));
  }
  last.push(button('info', jobId, 'Info', 'ℹ️', ButtonStyle.Secondary));
  last.push(button('delete', jobId, 'Delete', '🗑️', ButtonStyle.Secondary));
  rows.push(row(last));
  return rows;
}

export function queuedContent(position: number, ahead: { total?: number } = {}): string {
  const of = ahead.total && ahead.total >= position ? ` of ${ahead.total}` : '';
  return `⏳ Queued — position ${position}${of}`;
}

export interface ProgressView {
  /** Steps done across the whole job (every image), 1 … totalSteps, as the queue reports them. */
  step: number;
  totalSteps: number;
  /** The steps asked for, per image: with several images the line says which image and which of its steps. */
  stepsPerImage?: number;
  elapsedMs: number;
}

/**
 * Where a job-wide step count stands in the terms the user asked in: image i of n and its step. A 4-image 20-step
 * job at its 60th step is at image 3/4, step 20/20. Undefined for one image, or counts that do not split evenly.
 */
function imageAndStep(step: number, totalSteps: number, stepsPerImage: number | undefined): { image: number; images: number; step: number } | undefined {
  if (!stepsPerImage || stepsPerImage <= 0 || totalSteps <= stepsPerImage || totalSteps % stepsPerImage !== 0) return undefined;
  const images = totalSteps / stepsPerImage;
  const image = Math.min(images, Math.max(1, Math.ceil(step / stepsPerImage)));
  return { image, images, step: step - (image - 1) * stepsPerImage };
}

/** One line: image i/n and step k/n, the bar, percentage, elapsed time and a simple linear ETA (of the whole job). */
export function progressContent(view: ProgressView): string {
  const { step, totalSteps, elapsedMs } = view;
  const fraction = totalSteps > 0 ? step / totalSteps : 0;
  const eta = step > 0 ? (elapsedMs / step) * (totalSteps - step) : undefined;
  const split = imageAndStep(step, totalSteps, view.stepsPerImage);
  const parts = [
    split ? `🎨 Generating — image ${split.image}/${split.images} · step ${split.step}/${view.stepsPerImage}` : `🎨 Generating — step ${step}/${totalSteps}`,
    `\`${progressBar(fraction)}\` ${Math.round(fraction * 100)}%`,
    `${formatDuration(elapsedMs)} elapsed`,
  ];
  if (eta !== undefined && step < totalSteps) parts.push(`ETA ${formatDuration(eta)}`);
  return parts.join(' · ');
}

export const STARTING_CONTENT = '🎨 Starting…';

/** While the engine merges a job's LoRAs into the model (seconds on a real model; the set is then kept). */
export function loadingLorasContent(names: readonly string[]): string {
  return `🧩 Loading LoRA ${names.join(', ')}…`;
}

export interface ResultView {
  prompt: string;
  negative: string;
  seeds: readonly string[];
  steps: number;
  cfg: number;
  sampler: string;
  width: number;
  height: number;
  model: string;
  /** The prompt's token count ("92/150 tokens"), when the engine reported it. */
  promptTokens?: string;
  elapsedMs: number;
  requesterId: string;
  /** Where the job comes from ("Upscale ×2 of image 2 of `…`"), for jobs made with a button. */
  origin?: string;
  /** Images the safety checker flagged and the guild's policy withheld. */
  withheld: number;
  /** Images sent as spoilers or blurred. */
  flagged: number;
}

/** Discord caps embed field values at 1024 characters and descriptions at 4096. */
function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function formatCfg(cfg: number): string {
  return Number.isInteger(cfg) ? String(cfg) : String(Number(cfg.toFixed(2)));
}

export function resultEmbed(view: ResultView): APIEmbed {
  const fields: NonNullable<APIEmbed['fields']> = [];
  if (view.negative) fields.push({ name: 'Negative', value: clip(view.negative, 1024) });
  fields.push(
    { name: view.seeds.length > 1 ? 'Seeds' : 'Seed', value: clip(view.seeds.join(', '), 1024), inline: true },
    { name: 'Steps', value: String(view.steps), inline: true },
    { name: 'CFG', value: formatCfg(view.cfg), inline: true },
    { name: 'Sampler', value: clip(view.sampler, 1024), inline: true },
    { name: 'Size', value: `${view.width}×${view.height}`, inline: true },
    { name: 'Time', value: formatDuration(view.elapsedMs), inline: true },
    { name: 'Model', value: clip(view.model, 1024) },
  );
  if (view.promptTokens) fields.push({ name: 'Prompt tokens', value: clip(view.promptTokens, 1024) });
  if (view.origin) fields.push({ name: 'From', value: clip(view.origin, 1024) });
  const notes: string[] = [];
  if (view.flagged > 0) notes.push(`${view.flagged} image(s) flagged by the safety checker are hidden or blurred.`);
  if (view.withheld > 0) notes.push(`${view.withheld} image(s) flagged by the safety checker were withheld.`);
  return {
    title: 'Imagine',
    description: clip(view.prompt, 4000),
    fields,
    ...(notes.length > 0 ? { footer: { text: notes.join(' ') } } : {}),
  };
}

/** How a job was made from its parent, as a phrase before the parent's id ("an upscale ×2 of"). */
export const RELATION_TEXT: Record<JobRelation, string> = {
  reroll: 'a re-roll (new seed) of',
  'same-seed': 'a rerun with the same seed of',
  variation: 'a variation of',
  upscale: 'an upscale ×2 of',
  remix: 'a remix (edited prompt) of',
};

/** "An upscale ×2 of image 2 of `abc…`": where a job comes from, for its result embed; undefined without a parent. */
export function originText(lineage: JobLineage): string | undefined {
  if (!lineage.parentId) return undefined;
  const what = lineage.relation ? RELATION_TEXT[lineage.relation] : 'made from';
  const image = lineage.parentImage !== undefined ? `image ${lineage.parentImage} of ` : '';
  return `${what.charAt(0).toUpperCase()}${what.slice(1)} ${image}\`${lineage.parentId}\``;
}

export function finishedContent(requesterId: string): string {
  return `✅ Done for <@${requesterId}>`;
}

export function failedContent(reason: string): string {
  return `⚠️ Failed: ${clip(reason, 300)}`;
}

export const CANCELLED_CONTENT = '❌ Cancelled.';

/** A link to a message, for pointing an old reply at its result. */
export function messageLink(guildId: string | null, channelId: string, messageId: string): string {
  return `https://discord.com/channels/${guildId ?? '@me'}/${channelId}/${messageId}`;
}
