// A private redis-server child process on a free 127.0.0.1 port: what `imagine-bot sandbox --workers N` starts when
// no --redis is given, and what the tests and benchmarks use. Never the default port 6379 (someone's real Redis).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServer {
  url: string;
  pid: number | undefined;
  /** Stops the server (SIGTERM: with AOF on, Redis writes the file out first) and starts it again on the same port. */
  restart(): Promise<void>;
  /** Stops the server and deletes its data folder. */
  stop(): Promise<void>;
}

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

/**
 * A throwaway redis-server: 127.0.0.1 only, its files in a new temporary folder, stopped by stop(). No persistence
 * files unless `appendOnly` (AOF with fsync every write, as docs/queue-redis.md advises for the Redis backend).
 * Rejects when the binary cannot be started (callers check `findExecutable('redis-server')` first for a clear error).
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
        get pid() {
          return child.pid;
        },
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
    child.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
