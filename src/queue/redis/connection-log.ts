import type { RedisClient } from 'bullmq';
import type { Logger } from 'pino';

/**
 * One clear log line when the Redis connection drops and one when it is back. The client (ioredis under BullMQ)
 * reconnects on its own and commands wait meanwhile (maxRetriesPerRequest: null); without an 'error' listener an
 * outage would crash the process.
 */
export function watchConnection(client: RedisClient, logger: Logger | undefined, role: string): void {
  let down = false;
  client.on('error', (error: unknown) => {
    if (down) return;
    down = true;
    logger?.warn({ err: error, role }, 'redis connection lost; reconnecting (jobs wait, nothing is dropped)');
  });
  client.on('ready', () => {
    if (!down) return;
    down = false;
    logger?.info({ role }, 'redis connection restored');
  });
}
