import { existsSync, mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ConfigError } from '../config/load.js';
import { dirname, resolve } from 'node:path';
import { StorageCorruptError } from './errors.js';
import { Keyv } from 'keyv';
import KeyvSqlite from '@keyv/sqlite';
import KeyvRedis from '@keyv/redis';
import type { Logger } from 'pino';

export const DEFAULT_SQLITE_PATH = 'data/imagine.sqlite';

export interface StorageOptions {
  /**
   * A keyv connection URL, e.g. `redis://127.0.0.1:6379` (KEYV_URL). When absent, an SQLite file at `sqlitePath`.
   * `sqlite://path` is accepted too.
   */
  url?: string;
  /** The SQLite file used when no URL is given; its folder is created. Default `data/imagine.sqlite`. */
  sqlitePath?: string;
  logger?: Logger;
}

export type StorageKind = 'sqlite' | 'redis';

/**
 * One keyv backend (an SQLite file or a Redis server) shared by the job store, the settings store and the usage
 * records, each in its own keyv namespace. Each namespace gets its own adapter because keyv adapters carry a single
 * namespace (sharing one would let the last Keyv's namespace win for every key).
 */
export class Storage {
  readonly kind: StorageKind;
  /** Where the data lives, without credentials (an SQLite path, or redis host:port). */
  readonly location: string;
  private readonly url: string;
  private readonly logger: Logger | undefined;
  private readonly opened = new Map<string, Keyv>();
  private closed = false;

  /**
   * Opens the storage and checks it before anything is read: an SQLite file that SQLite cannot read becomes a
   * `StorageCorruptError` naming the file and what to do; a missing or empty (0-byte) file is logged as a new store,
   * since SQLite would otherwise start empty without a word (an empty file is what a failed copy or restore leaves).
   */
  static async open(options: StorageOptions = {}): Promise<Storage> {
    const storage = new Storage(options);
    if (storage.kind === 'sqlite') await storage.checkSqliteFile();
    return storage;
  }

  constructor(options: StorageOptions = {}) {
    this.logger = options.logger;
    const url = options.url?.trim();
    if (url && /^rediss?:\/\//i.test(url)) {
      this.kind = 'redis';
      this.url = url;
      this.location = redactUrl(url);
    } else if (url && /^sqlite:\/\//i.test(url)) {
      this.kind = 'sqlite';
      this.location = resolve(url.replace(/^sqlite:\/\//i, ''));
      this.url = `sqlite://${this.location}`;
    } else if (url) {
      throw new ConfigError([`Unsupported KEYV_URL scheme in ${redactUrl(url)}; use redis://, rediss:// or sqlite://.`]);
    } else {
      this.kind = 'sqlite';
      this.location = resolve(options.sqlitePath ?? DEFAULT_SQLITE_PATH);
      this.url = `sqlite://${this.location}`;
    }
    if (this.kind === 'sqlite') mkdirSync(dirname(this.location), { recursive: true });
  }

  /** The Keyv for one namespace (`jobs`, `settings`, `usage`, …); the same instance on every call. */
  namespace(name: string): Keyv {
    if (this.closed) throw new Error('Storage is closed.');
    const existing = this.opened.get(name);
    if (existing) return existing;
    let adapter: KeyvRedis<unknown> | KeyvSqlite;
    if (this.kind === 'redis') {
      const redis = new KeyvRedis(this.url, { throwOnConnectError: true, connectionTimeout: 5000 });
      // node-redis emits socket errors (server restarting, connection reset) on the client itself and reconnects;
      // keyv's adapter does not listen there, and an unheard 'error' event would crash the process.
      redis.client.on('error', (error: unknown) => {
        this.logger?.warn({ err: error, storage: this.kind, namespace: name }, 'redis connection error');
      });
      adapter = redis;
    } else {
      // busyTimeout: several adapters (and, after a crash, a leftover process) share the file.
      const sqlite = new KeyvSqlite({ uri: this.url, busyTimeout: 10_000 });
      // The default rollback journal waits for the disk on every write (an admission does ~3): with WAL and
      // synchronous=NORMAL a commit is an append, still crash-safe for the database (a power cut may lose the last
      // commits, never corrupt the file). journal_mode is stored in the file; synchronous is per connection.
      for (const pragma of ['PRAGMA journal_mode=WAL', 'PRAGMA synchronous=NORMAL']) {
        sqlite.query(pragma).catch((error: unknown) => {
          this.logger?.warn({ err: error, storage: this.kind, namespace: name }, `sqlite ${pragma} failed`);
        });
      }
      adapter = sqlite;
    }
    const keyv = new Keyv({ store: adapter, namespace: name, throwOnErrors: true });
    // Keyv re-emits adapter errors; without a listener an 'error' event would crash the process.
    keyv.on('error', (error: unknown) => {
      this.logger?.error({ err: error, storage: this.kind, namespace: name }, 'storage error');
    });
    this.opened.set(name, keyv);
    return keyv;
  }

  private async checkSqliteFile(): Promise<void> {
    const size = await stat(this.location).then((stats) => stats.size, () => undefined);
    if (size === undefined) {
      this.logger?.info({ storage: this.kind, location: this.location }, 'no store file yet; starting a new, empty store');
      return;
    }
    const walSize = await stat(`${this.location}-wal`).then((stats) => stats.size, () => 0);
    if (size === 0 && walSize === 0) {
      this.logger?.warn({ storage: this.kind, location: this.location }, 'store file is empty (0 bytes); starting a new, empty store');
      return;
    }
    // A connection of its own, closed again, so a damaged file never reaches the namespaces' adapters (which would
    // log the same failure once per namespace). quick_check reads every page without checking indexes against
    // their tables: enough to find a file that is not a database or whose pages are torn, and fast.
    const probe = new KeyvSqlite({ uri: this.url, busyTimeout: 10_000 });
    probe.on('error', () => undefined); // the rejected query below carries the same error
    let problem: { text: string; cause?: unknown } | undefined;
    try {
      const rows = (await probe.query('PRAGMA quick_check')) as Array<Record<string, unknown>>;
      const problems = rows.map((row) => String(Object.values(row)[0])).filter((line) => line !== 'ok');
      if (problems[0] !== undefined) problem = { text: `integrity check: ${problems[0]}` };
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code !== 'SQLITE_CORRUPT' && code !== 'SQLITE_NOTADB') throw error;
      problem = { text: String(code), cause: error };
    } finally {
      await probe.close().catch(() => undefined);
    }
    // Built once the probe is closed, so the command names the files that are really left beside the store.
    if (problem) throw this.corrupt(problem.text.replace(/\s+/g, ' ').trim(), problem.cause);
  }

  private corrupt(problem: string, cause?: unknown): StorageCorruptError {
    // SQLite's -wal and -shm files belong to the database: a new file beside an old WAL would be replayed from it.
    const files = [this.location, `${this.location}-wal`, `${this.location}-shm`].filter((file, i) => i === 0 || existsSync(file));
    const command = files.map((file) => `mv ${shellQuote(file)} ${shellQuote(`${file}.corrupt`)}`).join(' && ');
    return new StorageCorruptError(this.location, problem, command, cause === undefined ? {} : { cause });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.opened.values()];
    this.opened.clear();
    await Promise.allSettled(all.map((keyv) => keyv.disconnect()));
  }
}

/** A path as one shell word: as is when it is plainly safe, else in single quotes. */
function shellQuote(path: string): string {
  return /^[\w./+-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}

/** Drops user:password from a URL so it can be logged. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '(unparseable url)';
  }
}
