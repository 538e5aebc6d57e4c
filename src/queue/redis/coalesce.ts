/**
 * Runs an async task so that calls made while it runs fold into one more run afterwards: for work that reads the
 * whole current state (promoting jobs, announcing positions), where ten triggers in a burst need two runs, not ten.
 */
export class Coalescer {
  private running = false;
  private again = false;

  constructor(private readonly task: () => Promise<void>) {}

  async run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        await this.task();
      } while (this.again);
    } finally {
      this.running = false;
    }
  }
}
