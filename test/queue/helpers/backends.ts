// Storage backends the queue's storage tests run against: a real SQLite file in a temp folder, and a real
// redis-server started on a free 127.0.0.1 port for each test (skipped, with the reason, when the binary is absent).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Storage } from '../../../src/queue/storage.js';
import { startRedis } from '../../../src/util/redis-server.js';
import { missingProgram } from '../../helpers/needs.js';

export interface Backend {
  name: 'sqlite' | 'redis';
  /** Why the backend cannot run here (tests are skipped with this message), or undefined. */
  skip: string | undefined;
  /** Creates a fresh, empty backend; `open()` gives a new Storage on it each call (a "new process"). */
  create(): Promise<BackendInstance>;
}

export interface BackendInstance {
  /** The KEYV_URL / sqlite path a child process would use. */
  url: string;
  open(): Storage;
  dispose(): Promise<void>;
}

const redisMissing = missingProgram('redis-server', 'the Redis storage tests are skipped');

export const sqliteBackend: Backend = {
  name: 'sqlite',
  skip: undefined,
  async create() {
    const dir = mkdtempSync(join(tmpdir(), 'imagine-queue-'));
    const file = join(dir, 'imagine.sqlite');
    const opened: Storage[] = [];
    return {
      url: `sqlite://${file}`,
      open() {
        const storage = new Storage({ sqlitePath: file });
        opened.push(storage);
        return storage;
      },
      async dispose() {
        await Promise.allSettled(opened.map((s) => s.close()));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

export const redisBackend: Backend = {
  name: 'redis',
  skip: redisMissing,
  async create() {
    const server = await startRedis();
    const opened: Storage[] = [];
    return {
      url: server.url,
      open() {
        const storage = new Storage({ url: server.url });
        opened.push(storage);
        return storage;
      },
      async dispose() {
        await Promise.allSettled(opened.map((s) => s.close()));
        await server.stop();
      },
    };
  },
};

export const backends: Backend[] = [sqliteBackend, redisBackend];

// The redis-server itself is the sandbox's (src/util/redis-server.ts): the tests start the same one.
export { startRedis, type RedisServer } from '../../../src/util/redis-server.js';
