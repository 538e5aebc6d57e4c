// Storage selection and the job store's crash tolerance, on a real SQLite file and a real Redis server.
import { ConfigError } from '../../src/config/load.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { describeNeeding } from '../helpers/needs.js';
import { JobStore } from '../../src/queue/job-store.js';
import { Storage } from '../../src/queue/storage.js';
import { StorageCorruptError } from '../../src/queue/errors.js';
import { backends } from './helpers/backends.js';
import { captureLogs } from './helpers/log-capture.js';
import { owner, params } from './helpers/queue-harness.js';

test('SQLite by default: the folder is created, sqlite:// URLs work, unknown schemes are refused without leaking secrets', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'imagine-storage-'));
  try {
    const path = join(dir, 'nested', 'data', 'imagine.sqlite');
    const storage = new Storage({ sqlitePath: path });
    assert.equal(storage.kind, 'sqlite');
    await storage.namespace('jobs').set('k', { v: 1 });
    await storage.namespace('settings').set('k', { v: 2 });
    assert.deepEqual(await storage.namespace('jobs').get('k'), { v: 1 }, 'namespaces keep keys apart');
    await storage.close();
    assert.ok(existsSync(path));
    const again = new Storage({ url: `sqlite://${path}` });
    assert.deepEqual(await again.namespace('settings').get('k'), { v: 2 });
    await again.close();
    assert.throws(() => new Storage({ url: 'mongodb://user:hunter2@db.example/x' }), (error: unknown) => {
      assert.ok(error instanceof ConfigError, 'a configuration mistake is a typed, one-line error');
      assert.match(String(error), /Unsupported KEYV_URL scheme/);
      assert.doesNotMatch(String(error), /hunter2/);
      return true;
    });
    assert.doesNotMatch(new Storage({ url: 'redis://user:hunter2@127.0.0.1:1' }).location, /hunter2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** An SQLite store holding enough records to span several pages, closed again; returns its path. */
async function filledStore(dir: string): Promise<string> {
  const path = join(dir, 'imagine.sqlite');
  const storage = await Storage.open({ sqlitePath: path });
  for (let i = 0; i < 100; i++) await storage.namespace('jobs').set(`k${i}`, { filler: 'x'.repeat(400), i });
  await storage.close();
  return path;
}

function assertCorruptError(error: unknown, path: string): true {
  assert.ok(error instanceof StorageCorruptError, `a typed error, not ${String(error)}`);
  assert.equal(error.file, path);
  assert.ok(error.message.includes(path), 'the message names the file');
  assert.match(error.message, /restore the file from a backup/);
  assert.match(error.message, /move it aside to start with an empty store/);
  assert.ok(error.message.endsWith(error.moveAsideCommand), 'the message ends with the exact command');
  assert.doesNotMatch(error.message, /\n/, 'one line, as the CLI prints it');
  return true;
}

describe('SQLite file checks at open', () => {
  test('torn pages: a typed error naming the file, whose move-aside command works and lets a new store start', async () => {
    // A space and a quote in the folder name: the command must still be one that a shell runs as printed.
    const dir = mkdtempSync(join(tmpdir(), "imagine storage's "));
    try {
      const path = await filledStore(dir);
      const fd = openSync(path, 'r+');
      writeSync(fd, Buffer.alloc(4096, 0x41), 0, 4096, 2 * 4096); // overwrite the third page with garbage
      closeSync(fd);
      let moveAside = '';
      await assert.rejects(Storage.open({ sqlitePath: path }), (error: unknown) => {
        assertCorruptError(error, path);
        moveAside = (error as StorageCorruptError).moveAsideCommand;
        return true;
      });
      execFileSync('sh', ['-c', moveAside]);
      assert.ok(!existsSync(path) && existsSync(`${path}.corrupt`), 'the damaged file was moved aside, kept for recovery');
      const { logger, lines } = captureLogs();
      const fresh = await Storage.open({ sqlitePath: path, logger });
      assert.equal(await fresh.namespace('jobs').get('k1'), undefined);
      await fresh.namespace('jobs').set('k1', { ok: true });
      await fresh.close();
      assert.ok(lines.some((l) => l.msg === 'no store file yet; starting a new, empty store' && l.location === path));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file that is not a database at all (and its leftover WAL) is reported the same way', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagine-storage-'));
    try {
      const path = join(dir, 'imagine.sqlite');
      writeFileSync(path, 'this is not a database\n'.repeat(200));
      writeFileSync(`${path}-wal`, 'stale');
      let moveAside = '';
      await assert.rejects(Storage.open({ sqlitePath: path }), (error: unknown) => {
        assertCorruptError(error, path);
        assert.match((error as Error).message, /SQLITE_NOTADB/);
        moveAside = (error as StorageCorruptError).moveAsideCommand;
        return true;
      });
      assert.equal(statSync(path).size, 'this is not a database\n'.length * 200, 'the check left the file as it was');
      assert.ok(moveAside.startsWith(`mv ${path} ${path}.corrupt && mv ${path}-wal ${path}-wal.corrupt`), moveAside);
      // Whatever SQLite left beside the file (its -shm too, when it made one) goes aside with it.
      execFileSync('sh', ['-c', moveAside]);
      assert.deepEqual(readdirSync(dir).filter((name) => !name.endsWith('.corrupt')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a missing or 0-byte file is logged as a new store; a healthy one is opened without a word', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagine-storage-'));
    try {
      const missing = join(dir, 'sub', 'missing.sqlite');
      const empty = join(dir, 'empty.sqlite');
      writeFileSync(empty, '');
      const { logger, lines } = captureLogs();
      for (const path of [missing, empty]) {
        const storage = await Storage.open({ sqlitePath: path, logger });
        await storage.namespace('jobs').set('k', 1);
        await storage.close();
      }
      assert.deepEqual(
        lines.map((l) => [l.level, l.msg, l.location]),
        [
          [30, 'no store file yet; starting a new, empty store', missing],
          [40, 'store file is empty (0 bytes); starting a new, empty store', empty],
        ],
      );
      lines.length = 0;
      const healthy = await filledStore(join(dir, 'sub'));
      const reopened = await Storage.open({ sqlitePath: healthy, logger });
      assert.deepEqual(await reopened.namespace('jobs').get('k7'), { filler: 'x'.repeat(400), i: 7 });
      await reopened.close();
      assert.deepEqual(lines, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

for (const backend of backends) {
  describeNeeding(`job store on ${backend.name}`, backend.skip, ({ test }) => {
    test('loading tolerates dangling ids, unreadable records and finished jobs left in the index', async () => {
      const instance = await backend.create();
      try {
        const storage = instance.open();
        const keyv = storage.namespace('jobs');
        const store = new JobStore(keyv);
        await store.loadActive();
        const a = await store.create({ owner: owner('G', 'u'), params: params('a') }, 1);
        const b = await store.create({ owner: owner('G', 'u'), params: params('b') }, 2);
        const c = await store.create({ owner: owner('G', 'u'), params: params('c') }, 3);
        assert.deepEqual([a.seq, b.seq, c.seq], [1, 2, 3]);
        // What crashes between two writes leave behind: an id whose record is gone, a garbage record, and a job
        // whose final record was written but whose index entry was not yet removed.
        const index = (await keyv.get('index:active')) as { ids: string[]; nextSeq: number };
        await keyv.set('index:active', { ...index, ids: ['missing00000', ...index.ids, 'garbage00000'] });
        await keyv.set('job:garbage00000', { nonsense: true });
        await keyv.set(`job:${b.id}`, { ...b, status: 'done' });

        const { logger, lines } = captureLogs();
        const reopened = new JobStore(instance.open().namespace('jobs'), { logger });
        const active = await reopened.loadActive();
        assert.deepEqual(active.map((j) => j.params.prompt), ['a', 'c']);
        assert.ok(lines.some((l) => l.msg === 'indexed job missing; skipped' && l.jobId === 'missing00000'));
        assert.ok(lines.some((l) => l.msg === 'indexed job unreadable; skipped' && l.jobId === 'garbage00000'));
        // The index was cleaned, and sequence numbers keep growing past everything seen.
        assert.deepEqual(((await keyv.get('index:active')) as { ids: string[] }).ids, [a.id, c.id]);
        const d = await reopened.create({ owner: owner('G', 'u'), params: params('d') }, 4);
        assert.equal(d.seq, 4);
        // Finished jobs stay readable (buttons on old messages) and leave the index.
        await reopened.finish({ ...a, status: 'done', finishedAt: 5 });
        assert.equal((await reopened.get(a.id))?.status, 'done');
        assert.deepEqual((await new JobStore(instance.open().namespace('jobs')).loadActive()).map((j) => j.id), [c.id, d.id]);
      } finally {
        await instance.dispose();
      }
    });

    test('bot instances (shard sets) sharing one store keep their own active index; job records stay shared', async () => {
      const instance = await backend.create();
      try {
        // Two bot processes at once, each with its own connection, creating jobs in interleaved order: with one
        // shared index, each write of the whole list would drop the other process's newest ids.
        const zero = new JobStore(instance.open().namespace('jobs'), { instance: 'shards-0-of-2' });
        const one = new JobStore(instance.open().namespace('jobs'), { instance: 'shards-1-of-2' });
        await Promise.all([zero.loadActive(), one.loadActive()]);
        const created = { zero: [] as string[], one: [] as string[] };
        for (let i = 0; i < 4; i += 1) {
          const [a, b] = await Promise.all([
            zero.create({ owner: owner('G0', 'u'), params: params(`zero ${i}`) }, i),
            one.create({ owner: owner('G1', 'u'), params: params(`one ${i}`) }, i),
          ]);
          created.zero.push(a.id);
          created.one.push(b.id);
        }
        assert.ok(zero.owns(created.zero[0]!) && !zero.owns(created.one[0]!), 'each process owns the jobs it created');
        await one.finish({ ...(await one.get(created.one[0]!))!, status: 'done', finishedAt: 9 });
        // Restarted, each reads back exactly its own active jobs; any of them reads any job record.
        const zeroAgain = new JobStore(instance.open().namespace('jobs'), { instance: 'shards-0-of-2' });
        const oneAgain = new JobStore(instance.open().namespace('jobs'), { instance: 'shards-1-of-2' });
        assert.deepEqual((await zeroAgain.loadActive()).map((j) => j.id), created.zero);
        assert.deepEqual((await oneAgain.loadActive()).map((j) => j.id), created.one.slice(1));
        assert.equal((await zeroAgain.get(created.one[0]!))?.status, 'done', 'a button on shard 0 can read a job of shard 1');
        assert.deepEqual(await new JobStore(instance.open().namespace('jobs')).loadActive(), [], 'the single-process index is a third, separate one');
      } finally {
        await instance.dispose();
      }
    });

    test('an unreadable index starts an empty queue with a warning instead of crashing', async () => {
      const instance = await backend.create();
      try {
        const keyv = instance.open().namespace('jobs');
        await keyv.set('index:active', 'corrupt');
        const { logger, lines } = captureLogs();
        const store = new JobStore(keyv, { logger });
        assert.deepEqual(await store.loadActive(), []);
        assert.ok(lines.some((l) => l.msg === 'job index unreadable; starting with an empty queue'));
        assert.equal((await store.create({ owner: owner('G', 'u'), params: params('x') }, 1)).seq, 1);
      } finally {
        await instance.dispose();
      }
    });
  });
}
