/** Discord's epoch (2015-01-01T00:00:00Z); snowflakes encode milliseconds since it in their top 42 bits. */
export const DISCORD_EPOCH_MS = 1420070400000n;

/**
 * Generates real Discord snowflakes (timestamp << 22 | worker << 17 | process << 12 | increment), so that
 * @discordjs/rest's bucket keying (which looks for 17–19 digit ids) and discord.js's `createdTimestamp` behave exactly
 * as they do against Discord.
 */
export class SnowflakeGenerator {
  private increment = 0n;
  private lastTimestamp = 0n;

  constructor(
    private readonly nowMs: () => number = Date.now,
    private readonly workerId = 1n,
    private readonly processId = 0n,
  ) {}

  next(): string {
    let timestamp = BigInt(Math.floor(this.nowMs()));
    // Ids must be strictly increasing even if two are made in the same millisecond or the clock is advanced oddly.
    if (timestamp < this.lastTimestamp) timestamp = this.lastTimestamp;
    if (timestamp === this.lastTimestamp) {
      this.increment = (this.increment + 1n) & 0xfffn;
      if (this.increment === 0n) timestamp += 1n;
    } else {
      this.increment = 0n;
    }
    this.lastTimestamp = timestamp;
    const id =
      ((timestamp - DISCORD_EPOCH_MS) << 22n) | (this.workerId << 17n) | (this.processId << 12n) | this.increment;
    return id.toString();
  }
}

/** The millisecond Unix timestamp a snowflake was minted at. */
export function snowflakeTimestamp(id: string): number {
  return Number((BigInt(id) >> 22n) + DISCORD_EPOCH_MS);
}

export function isSnowflake(value: unknown): value is string {
  return typeof value === 'string' && /^\d{17,20}$/.test(value);
}
