// Storage selection and the job store's crash tolerance, on a real SQLite file and a real Redis server.
import { ConfigError } from '../../src/config/load.js';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { describeNeeding } from '../helpers/needs.js';
import { JobStore } from '../../src/queue/job-store.js';
import { Storage } from '../../src/queue/storage.js';
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
