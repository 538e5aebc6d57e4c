import { mkdirSync } from 'node:fs';
import { ConfigError } from '../config/load.js';
import { dirname, resolve } from 'node:path';
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.opened.values()];
    this.opened.clear();
    await Promise.allSettled(all.map((keyv) => keyv.disconnect()));
  }
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
