/**
 * The bot thread's event-loop delay, measured all the time (perf_hooks.monitorEventLoopDelay is a cheap native
 * histogram) and logged on request: `kill -USR2 <bot pid>` logs 'event loop delay' with the percentiles since the
 * previous request (or since start) and starts a new window. npm run bench:responsiveness reads it that way; an
 * operator can too, when interactions feel slow.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from '../log.js';

export const LOOP_DELAY_SIGNAL = 'SIGUSR2';
export const LOOP_DELAY_MESSAGE = 'event loop delay';

/** Starts measuring; returns a function that stops (and forgets the signal handler). */
export function startLoopDelayMonitor(log: Logger): () => void {
  // 10 ms sampling: a stall shows up with its full length; finer resolution only costs timer wake-ups.
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const ms = (nanoseconds: number) => Math.round(nanoseconds / 1e4) / 100;
  const report = () => {
    log.info(
      {
        module: 'runtime',
        samples: histogram.count,
        p50Ms: ms(histogram.percentile(50)),
        p99Ms: ms(histogram.percentile(99)),
        maxMs: ms(histogram.max),
        meanMs: ms(histogram.mean),
      },
      LOOP_DELAY_MESSAGE,
    );
    histogram.reset();
  };
  process.on(LOOP_DELAY_SIGNAL, report);
  return () => {
    process.off(LOOP_DELAY_SIGNAL, report);
    histogram.disable();
  };
}
