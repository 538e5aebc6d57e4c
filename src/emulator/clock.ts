/**
 * The emulator's notion of "now". Discord's interaction deadlines (3 s to acknowledge, 15 min of token life) are
 * measured against this clock, so tests can prove expiry behaviour by advancing it instead of sleeping for minutes.
 */
export class EmulatorClock {
  private offsetMs = 0;

  now(): number {
    return Date.now() + this.offsetMs;
  }

  /** Moves the clock forward (never backwards: Discord's clock does not rewind). */
  advance(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError('seconds must be a finite number ≥ 0');
    this.offsetMs += seconds * 1000;
  }

  get offsetSeconds(): number {
    return this.offsetMs / 1000;
  }
}
