// The job queue on real storage (an SQLite file and a real redis-server): fairness across guilds and users,
// positions that match the real dispatch order, persistence across a crash, cancel, "not yours", engine failures.
import assert from 'node:assert/strict';
import { describeNeeding } from '../helpers/needs.js';
import { JobNotActiveError, JobNotFoundError, NotYourJobError } from '../../src/queue/errors.js';
import { JOB_ID_PATTERN } from '../../src/queue/ids.js';
import { backends } from './helpers/backends.js';
import { StepGenerator } from './helpers/generator.js';
import { createQueue, owner, params } from './helpers/queue-harness.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

for (const backend of backends) {
  describeNeeding(`job queue on ${backend.name}`, backend.skip, ({ test }) => {
    test('guild B waits behind at most one job of guild A, which queued ten', async () => {
      const instance = await backend.create();
      try {
        const generator = new StepGenerator();
        // A1 stays busy until every job is queued, as a real job (seconds long) would while a user clicks.
        let releaseA1!: () => void;
        generator.gates.set('A1', new Promise<void>((resolve) => (releaseA1 = resolve)));
        const h = createQueue(instance.open(), generator);
        await h.queue.start();
        for (let i = 1; i <= 10; i++) await h.queue.enqueue({ owner: owner('A', 'alice'), params: params(`A${i}`) });
        const b = await h.queue.enqueue({ owner: owner('B', 'bob'), params: params('B1') });
        releaseA1();
        await h.queue.idle();
        const order = h.startedOrder();
        assert.equal(order.length, 11);
        const bIndex = order.indexOf('B1');
        assert.ok(bIndex === 1 || bIndex === 2, `B1 started ${bIndex + 1}th: ${order.join(' ')}`);
        // The position announced when B queued is the one it got (position 1 = next to start).
        assert.ok(b.position !== null && b.position >= 0 && b.position <= 2, `B1 was told position ${b.position}`);
        assert.deepEqual(order.filter((p) => p.startsWith('A')), ['A1', 'A2', 'A3', 'A4', 'A5', 'A6', 'A7', 'A8', 'A9', 'A10']);
      } finally {
        await instance.dispose();
      }
    });

    test('users within a guild alternate, and every announced position matches the real start order', async () => {
      const instance = await backend.create();
      try {
        const generator = new StepGenerator();
        generator.hangOn.add('hold');
        const h = createQueue(instance.open(), generator);
        await h.queue.start();
        // A job that holds the worker so everything below waits, and positions can be read at leisure.
        const holdStarted = h.waitFor('started', 'hold');
        const hold = await h.queue.enqueue({ owner: owner('G', 'zed'), params: params('hold') });
        await holdStarted;
        const plan: Array<[string, string, string]> = [
          ['G', 'u1', 'u1-a'], ['G', 'u1', 'u1-b'], ['G', 'u1', 'u1-c'], ['G', 'u1', 'u1-d'],
          ['G', 'u2', 'u2-a'], ['G', 'u2', 'u2-b'],
          ['H', 'v1', 'v1-a'], ['H', 'v1', 'v1-b'],
          ['G', 'u3', 'u3-a'],
        ];
        const ids = new Map<string, string>();
        for (const [guild, user, prompt] of plan) {
          const standing = await h.queue.enqueue({ owner: owner(guild, user), params: params(prompt) });
          assert.match(standing.job.id, JOB_ID_PATTERN);
          ids.set(prompt, standing.job.id);
        }
        const announced = new Map<string, number>();
        for (const [prompt, id] of ids) {
          const standing = await h.queue.standing(id);
          assert.ok(standing && standing.position !== null && standing.position > 0);
          announced.set(prompt, standing.position);
        }
        // What the snapshot says agrees with the per-job standings.
        const snap = await h.queue.snapshot('u1');
        assert.equal(snap.queuedTotal, plan.length);
        assert.deepEqual(snap.running.map((r) => r.job.params.prompt), ['hold']);
        assert.deepEqual(
          snap.user.map((s) => [s.job.params.prompt, s.position]),
          ['u1-a', 'u1-b', 'u1-c', 'u1-d'].map((p) => [p, announced.get(p)]),
        );
        assert.deepEqual(
          snap.guilds.sort((x, y) => x.guildId.localeCompare(y.guildId)),
          [{ guildId: 'G', queued: 7, running: 1 }, { guildId: 'H', queued: 2, running: 0 }],
        );

        await h.queue.cancel(hold.job.id, { userId: 'zed', isAdmin: false });
        await h.queue.idle();
        const order = h.startedOrder().slice(1);
        const byPosition = [...announced.entries()].sort((x, y) => x[1] - y[1]).map(([p]) => p);
        assert.deepEqual(order, byPosition, 'start order = order of announced positions');
        // Within guild G the users take turns: u1, u2, u3, u1, u2, u1, u1.
        assert.deepEqual(order.filter((p) => !p.startsWith('v')).map((p) => p.slice(0, 2)), ['u1', 'u2', 'u3', 'u1', 'u2', 'u1', 'u1']);
        // And the guilds take turns while both have jobs.
        assert.deepEqual(order.slice(0, 4).map((p) => (p.startsWith('v') ? 'H' : 'G')), ['G', 'H', 'G', 'H']);
      } finally {
        await instance.dispose();
      }
    });

    test('a job runs through queued → started → progress → finished with real PNGs and stored results', async () => {
      const instance = await backend.create();
      try {
        const generator = new StepGenerator();
        const h = createQueue(instance.open(), generator);
        await h.queue.start();
        const finished = h.waitFor('finished', 'a lighthouse');
        const standing = await h.queue.enqueue({
          owner: owner('G', 'u1'),
          params: params('a lighthouse', { seed: '18446744073709551614', count: 2, steps: 4 }),
          meta: { interactionToken: 'tok', messageId: '123' },
        });
        const done = await finished;
        assert.equal(done.images.length, 2);
        for (const image of done.images) assert.deepEqual(Buffer.from(image.png.subarray(0, 8)), PNG_SIGNATURE);
        const events = h.log.filter((e) => e.prompt === 'a lighthouse').map((e) => e.event);
        assert.deepEqual(events, ['queued', 'started', 'progress', 'progress', 'progress', 'progress', 'finished']);
        const stored = await h.queue.getJob(standing.job.id);
        assert.equal(stored?.status, 'done');
        assert.deepEqual(stored?.result?.seeds, ['18446744073709551614', '18446744073709551615']);
        assert.equal(stored?.params.seed, '18446744073709551614');
        assert.deepEqual(stored?.meta, { interactionToken: 'tok', messageId: '123' });
        assert.ok(stored.startedAt !== undefined && stored.finishedAt !== undefined && stored.finishedAt >= stored.startedAt);
        // The Discord side records its message ids on the finished job; a new process reads them back.
        await h.queue.updateMeta(standing.job.id, { resultMessageId: '456' });
        const reread = createQueue(instance.open(), new StepGenerator());
        await reread.queue.start();
        const after = await reread.queue.getJob(standing.job.id);
        assert.deepEqual(after?.meta, { interactionToken: 'tok', messageId: '123', resultMessageId: '456' });
        await reread.queue.close();
        await h.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('a crash (instance dropped without shutdown) loses nothing: a new instance runs all 3 jobs in order', async () => {
      const instance = await backend.create();
      const crashedGenerator = new StepGenerator();
      try {
        // The first process: P1 is running (stuck on the "GPU") and P2, P3 wait when it dies.
        crashedGenerator.hangOn.add('P1');
        const crashed = createQueue(instance.open(), crashedGenerator);
        await crashed.queue.start();
        const p1Started = crashed.waitFor('started', 'P1');
        for (const prompt of ['P1', 'P2', 'P3']) await crashed.queue.enqueue({ owner: owner('G', 'u1'), params: params(prompt) });
        await p1Started;
        // No close(), no shutdown: from here on only what is in storage counts.

        const generator = new StepGenerator();
        const revived = createQueue(instance.open(), generator);
        const restored = revived.log;
        await revived.queue.start();
        assert.deepEqual(
          restored.filter((e) => e.event === 'queued').map((e) => [e.prompt, e.position]),
          [['P1', 1], ['P2', 2], ['P3', 3]],
        );
        await revived.queue.idle();
        assert.deepEqual(generator.finished, ['P1', 'P2', 'P3']);
        const snap = await revived.queue.snapshot();
        assert.equal(snap.queuedTotal, 0);
        await revived.queue.close();
      } finally {
        // The "dead" instance's stuck run is never released (a dead process writes nothing more); it holds no timer.
        await instance.dispose();
      }
    });

    test('close() interrupts the running job, and the next start reruns it first', async () => {
      const instance = await backend.create();
      try {
        const first = new StepGenerator();
        first.hangOn.add('long');
        const h = createQueue(instance.open(), first);
        await h.queue.start();
        const started = h.waitFor('started', 'long');
        await h.queue.enqueue({ owner: owner('G', 'u1'), params: params('long') });
        await h.queue.enqueue({ owner: owner('H', 'u2'), params: params('short') });
        await started;
        await h.queue.close();
        assert.deepEqual(first.started, ['long']);

        const second = new StepGenerator();
        const again = createQueue(instance.open(), second);
        await again.queue.start();
        await again.queue.idle();
        assert.deepEqual(second.finished, ['long', 'short']);
        const long = (await again.queue.snapshot()).running;
        assert.equal(long.length, 0);
        const records = await Promise.all(
          again.log.filter((e) => e.event === 'queued').map(async (e) => e.prompt),
        );
        assert.deepEqual(records, ['long', 'short']);
        await again.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('close() with a shutdown grace: the running job finishes and is recorded, no other starts; past the grace it is interrupted', async () => {
      const instance = await backend.create();
      try {
        const generator = new StepGenerator();
        let release!: () => void;
        generator.gates.set('finishing', new Promise<void>((resolve) => (release = resolve)));
        const h = createQueue(instance.open(), generator, { shutdownGraceMs: 60_000 });
        await h.queue.start();
        const started = h.waitFor('started', 'finishing');
        const finishing = await h.queue.enqueue({ owner: owner('G', 'u1'), params: params('finishing') });
        await h.queue.enqueue({ owner: owner('H', 'u2'), params: params('waiting') });
        await started;
        // SIGTERM arrives while the job runs; it is released only afterwards.
        let closed = false;
        const closing = h.queue.close().then(() => (closed = true));
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(closed, false, 'close() waits for the running job');
        release();
        await closing;
        assert.deepEqual(generator.started, ['finishing']);
        assert.deepEqual(generator.finished, ['finishing']);
        assert.deepEqual(h.log.filter((e) => e.event === 'finished').map((e) => e.prompt), ['finishing']);
        assert.equal((await h.queue.getJob(finishing.job.id))?.status, 'done');

        // The next process runs only what had not started; then a job that outlasts a short grace is interrupted.
        const second = new StepGenerator();
        second.hangOn.add('waiting');
        const again = createQueue(instance.open(), second, { shutdownGraceMs: 100 });
        const waitingStarted = again.waitFor('started', 'waiting');
        await again.queue.start();
        await waitingStarted;
        await again.queue.close();
        assert.deepEqual(second.finished, []);
        assert.ok(!again.log.some((e) => e.event === 'finished' || e.event === 'failed'), 'interrupted, neither finished nor failed');

        const third = new StepGenerator();
        const last = createQueue(instance.open(), third);
        await last.queue.start();
        await last.queue.idle();
        assert.deepEqual(third.finished, ['waiting']);
        await last.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('cancel: queued and running jobs, by the owner or an admin; others are refused', async () => {
      const instance = await backend.create();
      try {
        const generator = new StepGenerator();
        generator.hangOn.add('running');
        const h = createQueue(instance.open(), generator);
        await h.queue.start();
        const started = h.waitFor('started', 'running');
        const running = await h.queue.enqueue({ owner: owner('G', 'owner'), params: params('running') });
        const queued = await h.queue.enqueue({ owner: owner('G', 'owner'), params: params('queued') });
        const later = await h.queue.enqueue({ owner: owner('G', 'owner'), params: params('later') });
        await started;
        assert.equal((await h.queue.standing(later.job.id))?.position, 2);

        await assert.rejects(h.queue.cancel(queued.job.id, { userId: 'stranger', isAdmin: false }), NotYourJobError);
        await assert.rejects(h.queue.cancel(running.job.id, { userId: 'stranger', isAdmin: false }), (error: unknown) => {
          assert.ok(error instanceof NotYourJobError);
          assert.equal(error.code, 'not_yours');
          return true;
        });

        const cancelledQueued = await h.queue.cancel(queued.job.id, { userId: 'owner', isAdmin: false });
        assert.equal(cancelledQueued.status, 'cancelled');
        // The job behind it moved up, and was told so.
        assert.equal((await h.queue.standing(later.job.id))?.position, 1);
        assert.ok(h.log.some((e) => e.event === 'position' && e.prompt === 'later' && e.position === 1));

        // An admin cancels someone else's running job: the engine gets the abort, the worker moves on.
        const cancelledRunning = await h.queue.cancel(running.job.id, { userId: 'mod', isAdmin: true });
        assert.equal(cancelledRunning.status, 'cancelled');
        assert.equal(cancelledRunning.cancelledBy, 'mod');
        await h.queue.idle();
        assert.deepEqual(generator.started, ['running', 'later']);
        assert.deepEqual(generator.finished, ['later']);
        const cancelEvents = h.log.filter((e) => e.event === 'cancelled').map((e) => e.prompt);
        assert.deepEqual(cancelEvents, ['queued', 'running']);
        assert.equal((await h.queue.getJob(queued.job.id))?.status, 'cancelled');
        assert.equal((await h.queue.getJob(running.job.id))?.status, 'cancelled');

        await assert.rejects(h.queue.cancel(later.job.id, { userId: 'owner', isAdmin: false }), JobNotActiveError);
        await assert.rejects(h.queue.cancel('AAAAAAAAAAAA', { userId: 'owner', isAdmin: true }), JobNotFoundError);
        await h.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('an engine failure marks the job failed with a short reason and the worker carries on', async () => {
      const instance = await backend.create();
      try {
        const generator = new StepGenerator();
        generator.failOn.add('boom');
        const h = createQueue(instance.open(), generator);
        await h.queue.start();
        const failed = h.waitFor('failed', 'boom');
        const boom = await h.queue.enqueue({ owner: owner('G', 'u1'), params: params('boom', { steps: 4 }) });
        await h.queue.enqueue({ owner: owner('G', 'u1'), params: params('after') });
        const failure = await failed;
        assert.equal(failure.error.code, 'engine_failed');
        assert.equal(failure.error.message, 'The image engine failed on this job.');
        assert.doesNotMatch(failure.error.message, /CUDA/, 'internal detail stays in the log');
        await h.queue.idle();
        assert.deepEqual(generator.finished, ['after']);
        const stored = await h.queue.getJob(boom.job.id);
        assert.equal(stored?.status, 'failed');
        assert.deepEqual(stored?.error, failure.error);
        await h.queue.close();
      } finally {
        await instance.dispose();
      }
    });
  });
}
