/**
 * Shows `models pull` progress: a redrawn bar on a terminal, plain lines otherwise (docker logs, CI), where a bar's
 * carriage returns would make one unreadable line.
 */
import { progressBar } from '../util/format.js';
import { formatBytes, type PullProgress } from './pull.js';

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const BAR_WIDTH = 24;
/** Redraws at most this often: a fast link delivers thousands of chunks a second. */
const REDRAW_MS = 100;

export function createProgressReporter(output: ProgressOutput, now: () => number = Date.now): (progress: PullProgress) => void {
  let lastDraw = 0;
  let drawn = false;
  const tty = output.isTTY === true;

  const clearLine = () => {
    if (drawn) output.write('\r\x1b[2K');
    drawn = false;
  };

  return (progress) => {
    const count = `[${progress.fileIndex + 1}/${progress.fileCount}]`;
    if (progress.kind === 'plan') {
      output.write(`${progress.fileCount} files, ${formatBytes(progress.totalBytes)} in all\n`);
      return;
    }
    if (progress.kind === 'done') {
      if (tty) clearLine();
      const note = progress.cached ? ' (already in the cache)' : '';
      output.write(`${tty ? '✔' : 'done'} ${count} ${progress.path} ${formatBytes(progress.fileSize)}${note}\n`);
      return;
    }
    if (progress.kind === 'file') {
      if (!tty) {
        const resumed = progress.resumedAt ? `, resuming at ${formatBytes(progress.resumedAt)}` : '';
        output.write(`get  ${count} ${progress.path} ${formatBytes(progress.fileSize)}${resumed}\n`);
        return;
      }
    }
    if (!tty) return;
    const time = now();
    if (progress.kind === 'bytes' && time - lastDraw < REDRAW_MS) return;
    lastDraw = time;
    const fraction = progress.totalBytes > 0 ? progress.doneBytes / progress.totalBytes : 1;
    const bar = progressBar(fraction, BAR_WIDTH);
    let line = `${bar} ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(progress.doneBytes)}/${formatBytes(progress.totalBytes)} ${count} ${progress.path}`;
    const columns = output.columns ?? 100;
    if (line.length > columns - 1) line = `${line.slice(0, columns - 2)}…`;
    output.write(`\r\x1b[2K${line}`);
    drawn = true;
  };
}
