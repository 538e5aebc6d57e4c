// Storage backends the queue's storage tests run against: a real SQLite file in a temp folder, and a real
// redis-server started on a free 127.0.0.1 port for each test (skipped, with the reason, when the binary is absent).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Storage } from '../../../src/queue/storage.js';
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

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  url: string;
  /** Stops the server (SIGTERM: with AOF on, Redis writes the file out first) and starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A throwaway redis-server: 127.0.0.1 only, stopped by stop(). No persistence files unless `appendOnly` (AOF with
 * fsync every write, as docs/queue-redis.md advises for the Redis backend).
 */
export async function startRedis(options: { appendOnly?: boolean } = {}): Promise<RedisServer> {
  const persistence = options.appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
  const spawnOn = (port: number, dir: string) =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir, '--protected-mode', 'yes'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const stopChild = async (child: ChildProcess) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'imagine-redis-'));
    let child = spawnOn(port, dir);
    const ready = await waitForReady(child);
    if (ready) {
      return {
        url: `redis://127.0.0.1:${port}`,
        async restart() {
          await stopChild(child);
          child = spawnOn(port, dir);
          if (!(await waitForReady(child))) throw new Error(`redis-server did not come back on port ${port}`);
        },
        async stop() {
          await stopChild(child);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  throw new Error('could not start redis-server on a free port');
}

function waitForReady(child: ChildProcess): Promise<boolean> {
  return new Promise((resolve) => {
    let output = '';
    const timer = setTimeout(() => resolve(false), 15_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
