/** Text formatting shared by the terminal (CLI progress) and Discord messages. */

/** "12.3s", "1m 05s", "1h 02m". */
/** A size as people read it: "512x768" → "512×768" (command choices, limits, refusals). */
export function sizeLabel(size: string): string {
  return size.replace('x', '×');
}

export function formatDuration(ms: number): string {
  const seconds = Math.max(0, ms) / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const whole = Math.round(seconds);
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes}m ${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`;
}

/** A text progress bar of `width` cells: `██████░░░░`. */
export function progressBar(fraction: number, width = 16): string {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const filled = Math.round(clamped * width);
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}
