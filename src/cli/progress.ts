import { formatDuration, progressBar } from '../util/format.js';

/**
 * A one-line progress bar for terminals (redrawn in place on stderr). When stderr is not a terminal it stays
 * silent, so logs and pipes get no control characters.
 */
export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  private readonly enabled: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.enabled = Boolean(stream.isTTY);
  }

  update(done: number, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && done < this.total && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.stream.write(`\r${formatProgressLine(this.label, done, this.total, (now - this.started) / 1000)}\x1b[K`);
  }

  finish(): void {
    if (!this.enabled) return;
    this.update(this.total, true);
    this.stream.write('\n');
  }
}

/** `label [██████░░░░░░] 12/30 · 3.1s elapsed · ETA 4.6s` on the terminal. */
export function formatProgressLine(label: string, done: number, total: number, elapsedSeconds: number, width = 24): string {
  const bar = progressBar(total > 0 ? done / total : 0, width);
  const eta = done > 0 && done < total ? ` · ETA ${formatDuration((elapsedSeconds / done) * (total - done) * 1000)}` : '';
  return `${label} [${bar}] ${done}/${total} · ${formatDuration(elapsedSeconds * 1000)} elapsed${eta}`;
}
