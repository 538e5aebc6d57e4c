/** What the scheduler needs to know about a job. */
export interface SchedulableJob {
  id: string;
  guildId: string;
  userId: string;
}

/**
 * The scheduler's waiting room written out in serving order: the priority lane, then the guild ring with each
 * guild's user ring and each user's jobs oldest first. The Redis backend keeps the same structure in Redis lists
 * and rebuilds a FairScheduler from it to compute positions with the very same `order()`.
 */
export interface FairState {
  priority: SchedulableJob[];
  guilds: Array<{ guildId: string; users: Array<{ userId: string; jobIds: string[] }> }>;
}

interface GuildLane {
  /** Users with waiting jobs, in the order they will be served next. */
  userRing: string[];
  /** Each user's waiting job ids, oldest first. */
  jobsByUser: Map<string, string[]>;
}

/**
 * The waiting room in front of the pipeline worker: round-robin across guilds, and inside each guild round-robin
 * across users, FIFO per user.
 *
 * Taking a job serves the guild at the front of the guild ring and moves that guild to the back (if it still has
 * jobs); inside the guild the same happens with users. A guild that starts waiting joins the back of the ring, so
 * behind a guild that queued fifty jobs it waits for at most one of them. Interrupted jobs reloaded after a restart
 * go into a priority lane served before the rings, because they had already been dispatched.
 *
 * Why not one p-queue per guild: p-queue cannot reorder its waiting tasks by user, remove one by id, or list them
 * in the order they will run, and positions ("Queued — position 3") need exactly that. Plain arrays express the
 * policy directly, and `order()` simulates the very same rotation, so a position is always what dispatch will do.
 */
export class FairScheduler<T extends SchedulableJob> {
  private readonly jobs = new Map<string, T>();
  private readonly priority: string[] = [];
  private readonly guildRing: string[] = [];
  private readonly lanes = new Map<string, GuildLane>();

  /** A scheduler holding exactly `state`, rings in the same rotation. */
  static fromState(state: FairState): FairScheduler<SchedulableJob> {
    const scheduler = new FairScheduler<SchedulableJob>();
    for (const job of state.priority) scheduler.push(job, { priority: true });
    // Pushing guild by guild and user by user appends each guild and user to its ring once, in this order.
    for (const { guildId, users } of state.guilds) {
      for (const { userId, jobIds } of users) for (const id of jobIds) scheduler.push({ id, guildId, userId });
    }
    return scheduler;
  }

  get size(): number {
    return this.jobs.size;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  get(id: string): T | undefined {
    return this.jobs.get(id);
  }

  /** Adds a waiting job. `priority` puts it in the lane served before all guilds (restored interrupted jobs). */
  push(job: T, options: { priority?: boolean } = {}): void {
    if (this.jobs.has(job.id)) throw new Error(`job ${job.id} is already waiting`);
    this.jobs.set(job.id, job);
    if (options.priority) {
      this.priority.push(job.id);
      return;
    }
    let lane = this.lanes.get(job.guildId);
    if (!lane) {
      lane = { userRing: [], jobsByUser: new Map() };
      this.lanes.set(job.guildId, lane);
      this.guildRing.push(job.guildId);
    }
    let userJobs = lane.jobsByUser.get(job.userId);
    if (!userJobs) {
      userJobs = [];
      lane.jobsByUser.set(job.userId, userJobs);
      lane.userRing.push(job.userId);
    }
    userJobs.push(job.id);
  }

  /** Removes a waiting job (cancel); false when it is not waiting. */
  remove(id: string): boolean {
    const job = this.jobs.get(id);
    if (!job) return false;
    this.jobs.delete(id);
    const p = this.priority.indexOf(id);
    if (p >= 0) {
      this.priority.splice(p, 1);
      return true;
    }
    const lane = this.lanes.get(job.guildId);
    const userJobs = lane?.jobsByUser.get(job.userId);
    if (!lane || !userJobs) return true;
    userJobs.splice(userJobs.indexOf(id), 1);
    if (userJobs.length === 0) {
      lane.jobsByUser.delete(job.userId);
      lane.userRing.splice(lane.userRing.indexOf(job.userId), 1);
    }
    if (lane.userRing.length === 0) {
      this.lanes.delete(job.guildId);
      this.guildRing.splice(this.guildRing.indexOf(job.guildId), 1);
    }
    return true;
  }

  /** Takes the job that should run next, or undefined when nothing waits. */
  next(): T | undefined {
    const id = this.priority.shift() ?? this.takeRoundRobin();
    if (id === undefined) return undefined;
    const job = this.jobs.get(id);
    this.jobs.delete(id);
    return job;
  }

  /** The job `next()` would take now, left waiting. */
  peek(): T | undefined {
    const id = this.priority[0] ?? this.peekRoundRobin();
    return id === undefined ? undefined : this.jobs.get(id);
  }

  /** Every waiting job in the order `next()` would hand them out if nothing else arrived. */
  order(): T[] {
    const ids: string[] = [...this.priority];
    // Simulate the rotation on copies: a cursor per user instead of shifting the real arrays.
    const guildRing = [...this.guildRing];
    const userRings = new Map<string, string[]>();
    for (const [guildId, lane] of this.lanes) userRings.set(guildId, [...lane.userRing]);
    const cursor = new Map<string, number>();
    while (guildRing.length > 0) {
      const guildId = guildRing.shift() as string;
      const lane = this.lanes.get(guildId) as GuildLane;
      const userRing = userRings.get(guildId) as string[];
      const userId = userRing.shift() as string;
      const userJobs = lane.jobsByUser.get(userId) as string[];
      const key = `${guildId}\u0000${userId}`;
      const at = cursor.get(key) ?? 0;
      ids.push(userJobs[at] as string);
      cursor.set(key, at + 1);
      if (at + 1 < userJobs.length) userRing.push(userId);
      if (userRing.length > 0) guildRing.push(guildId);
    }
    return ids.map((id) => this.jobs.get(id) as T);
  }

  /** 1-based positions of all waiting jobs (1 = next to start). */
  positions(): Map<string, number> {
    const positions = new Map<string, number>();
    this.order().forEach((job, i) => positions.set(job.id, i + 1));
    return positions;
  }

  /** Waiting jobs per guild. */
  countsByGuild(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const job of this.jobs.values()) counts.set(job.guildId, (counts.get(job.guildId) ?? 0) + 1);
    return counts;
  }

  /** The id `takeRoundRobin` would take, without rotating anything. */
  private peekRoundRobin(): string | undefined {
    const guildId = this.guildRing[0];
    if (guildId === undefined) return undefined;
    const lane = this.lanes.get(guildId) as GuildLane;
    return lane.jobsByUser.get(lane.userRing[0] as string)?.[0];
  }

  private takeRoundRobin(): string | undefined {
    const guildId = this.guildRing.shift();
    if (guildId === undefined) return undefined;
    const lane = this.lanes.get(guildId) as GuildLane;
    const userId = lane.userRing.shift() as string;
    const userJobs = lane.jobsByUser.get(userId) as string[];
    const id = userJobs.shift() as string;
    if (userJobs.length > 0) lane.userRing.push(userId);
    else lane.jobsByUser.delete(userId);
    if (lane.userRing.length > 0) this.guildRing.push(guildId);
    else this.lanes.delete(guildId);
    return id;
  }
}
