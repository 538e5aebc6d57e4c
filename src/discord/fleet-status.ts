import type { ShardInfo, WorkerInfo } from '../queue/index.js';
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

/**
 * `/imagine-status` lines for the gateway shards, over every bot process (each reports its own): one summary line,
 * then one line per shard: id, guilds, gateway ping, and the process that runs it.
 */
export function shardStatusLines(shards: readonly ShardInfo[], now: number): string[] {
  if (shards.length === 0) return [];
  const live = shards.filter((s) => s.state === 'live');
  const count = Math.max(...shards.map((s) => s.count));
  const lines = [`Shards: ${live.length} of ${count} live${live.length > 0 ? `, ${live.reduce((sum, s) => sum + s.guilds, 0)} server(s)` : ''}`];
  for (const s of shards.slice(0, MAX_LISTED)) {
    const where = `${s.host} (pid ${s.pid})`;
    if (s.state === 'gone') {
      lines.push(`• shard ${s.id} · gone · last report ${formatDuration(Math.max(0, now - s.lastHeartbeat))} ago from ${where}`);
      continue;
    }
    const ping = s.pingMs === null ? 'ping —' : `ping ${s.pingMs} ms`;
    lines.push(`• shard ${s.id} · ${s.guilds} server(s) · ${ping} · ${s.connected ? 'connected' : 'reconnecting'} · ${where}`);
  }
  if (shards.length > MAX_LISTED) lines.push(`… and ${shards.length - MAX_LISTED} more`);
  return lines;
}
