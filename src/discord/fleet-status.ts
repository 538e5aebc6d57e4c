import type { WorkerInfo } from '../queue/index.js';
import { formatDuration } from '../util/format.js';

/** How many workers a status reply lists; more would not fit Discord's 2000 characters with the rest. */
const MAX_LISTED = 15;

/** `/imagine-status` lines for the worker fleet (Redis backend): one summary line, then one line per worker. */
export function fleetStatusLines(workers: readonly WorkerInfo[], now: number): string[] {
  if (workers.length === 0) return ['Workers: none has registered yet (start one with `imagine-bot worker`).'];
  const live = workers.filter((w) => w.state !== 'gone');
  const busy = live.filter((w) => w.state === 'busy').length;
  const lines = [`Workers: ${live.length} live (${busy} busy)${workers.length > live.length ? `, ${workers.length - live.length} gone` : ''}`];
  for (const w of workers.slice(0, MAX_LISTED)) {
    const device = w.device === null ? '' : ` device ${w.device}`;
    const ago = formatDuration(Math.max(0, now - w.lastHeartbeat));
    lines.push(`• ${w.host} (pid ${w.pid}) · ${w.model} on ${w.provider}${device} · ${w.state} · ${w.jobsDone} job(s) done · heartbeat ${ago} ago`);
  }
  if (workers.length > MAX_LISTED) lines.push(`… and ${workers.length - MAX_LISTED} more`);
  return lines;
}
