/**
 * `/imagine-info` and the ⓘ button: a job's full parameters as the job store keeps them (Discord may strip or
 * recompress the PNG and its `parameters` chunk), with the job it was made from.
 */
import { JOB_ID_PATTERN, type JobRecord } from '../queue/index.js';
import { formatDuration } from '../util/format.js';
import { samplerLabel } from './queue-events.js';
import { RELATION_TEXT } from './render.js';

/** Discord's limit for a message's content. */
const MAX_CONTENT = 2000;


function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Inline code that a backtick inside the text cannot break. */
function code(text: string): string {
  return `\`${text.replace(/`/g, 'ˋ')}\``;
}

function timestamp(ms: number): string {
  return `<t:${Math.floor(ms / 1000)}:f>`;
}

/** The job's parameters, one labelled line each; `parent` is the job it was made from, when still stored. */
export function jobInfoContent(job: JobRecord, parent?: JobRecord | null): string {
  const { params } = job;
  const seeds = job.result?.seeds.length ? job.result.seeds : [params.seed];
  const lines = [
    `ℹ️ **Job** ${code(job.id)} · ${job.status} · by <@${job.owner.userId}> · ${timestamp(job.createdAt)}`,
    `**Prompt:** ${clip(params.prompt, 700)}`,
  ];
  if (params.negative) lines.push(`**Negative:** ${clip(params.negative, 500)}`);
  const settings = [
    `${seeds.length > 1 ? 'Seeds' : 'Seed'}: ${seeds.join(', ')}`,
    `Steps: ${params.steps}`,
    `CFG: ${params.cfg}`,
    `Sampler: ${samplerLabel(params.scheduler, params.karras)}`,
    `Size: ${params.width}×${params.height}`,
    `Images: ${params.count}`,
    `Clip skip: ${params.clipSkip ?? 1}`,
    `RNG: ${params.rng}`,
    `Prompt syntax: ${params.promptSyntax ?? 'plain'}`,
  ];
  lines.push(settings.join(' · '));
  if (params.init) lines.push(`**Starts from an image** (img2img), strength ${params.init.strength} · image ${code(params.init.ref.slice(0, 12))}`);
  if (job.result) {
    const model = job.result.model ? `${job.result.model} · ` : '';
    lines.push(`**Model:** ${model}took ${formatDuration(job.result.durationMs)}${job.result.promptTokens ? ` · ${job.result.promptTokens}` : ''}`);
  }
  if (job.error) lines.push(`**Failed:** ${clip(job.error.message, 300)}`);
  if (job.parentId) {
    const what = job.relation ? RELATION_TEXT[job.relation] : 'made from';
    const image = job.parentImage !== undefined ? ` (image ${job.parentImage})` : '';
    const parentLine = parent
      ? `${code(parent.id)}${image}: ${clip(parent.params.prompt, 200)} · seed ${parent.result?.seeds[(job.parentImage ?? 1) - 1] ?? parent.params.seed} · ${parent.params.width}×${parent.params.height}`
      : `${code(job.parentId)}${image} (no longer stored)`;
    lines.push(`**Made as** ${what} ${parentLine}`);
  }
  return clip(lines.join('\n'), MAX_CONTENT);
}

/**
 * What /imagine-info was given: a job id, or a link to a job's message (`…/channels/<guild>/<channel>/<message>`),
 * whose buttons name the job.
 */
export function parseJobReference(text: string): { jobId: string } | { channelId: string; messageId: string } | undefined {
  const trimmed = text.trim();
  if (JOB_ID_PATTERN.test(trimmed)) return { jobId: trimmed };
  const link = /\/channels\/(?:\d+|@me)\/(\d+)\/(\d+)\/?$/.exec(trimmed);
  if (link) return { channelId: link[1]!, messageId: link[2]! };
  return undefined;
}
