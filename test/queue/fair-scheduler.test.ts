// The scheduler on its own: positions (order()) and peek() always equal what next() hands out, and the rotation is fair.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FairScheduler, type SchedulableJob } from '../../src/queue/fair-scheduler.js';

/** A small deterministic PRNG so a failure can be replayed. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function build(ops: Array<['push', SchedulableJob] | ['remove', string] | ['next']>): { s: FairScheduler<SchedulableJob>; taken: string[] } {
  const s = new FairScheduler<SchedulableJob>();
  const taken: string[] = [];
  for (const op of ops) {
    if (op[0] === 'push') s.push(op[1]);
    else if (op[0] === 'remove') s.remove(op[1]);
    else {
      const job = s.next();
      if (job) taken.push(job.id);
    }
  }
  return { s, taken };
}

test('order() predicts next() exactly, under random pushes, removals and dispatches', () => {
  for (let seed = 1; seed <= 200; seed++) {
    const random = lcg(seed);
    const ops: Array<['push', SchedulableJob] | ['remove', string] | ['next']> = [];
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const r = random();
      if (r < 0.6) {
        const id = `j${i}`;
        ids.push(id);
        ops.push(['push', { id, guildId: `g${Math.floor(random() * 4)}`, userId: `u${Math.floor(random() * 3)}` }]);
      } else if (r < 0.75 && ids.length > 0) {
        ops.push(['remove', ids[Math.floor(random() * ids.length)] as string]);
      } else {
        ops.push(['next']);
      }
    }
    const { s } = build(ops);
    const predicted = s.order().map((j) => j.id);
    const positions = s.positions();
    predicted.forEach((id, i) => assert.equal(positions.get(id), i + 1));
    const drained: string[] = [];
    // peek() names the job next() then takes, and changes nothing (continuous batching peeks to see if it fits).
    for (let peeked = s.peek(), job = s.next(); job; peeked = s.peek(), job = s.next()) {
      assert.equal(peeked?.id, job.id, `seed ${seed}: peek before next`);
      drained.push(job.id);
    }
    assert.equal(s.peek(), undefined);
    assert.deepEqual(drained, predicted, `seed ${seed}`);
    assert.equal(s.size, 0);
  }
});

test('round-robin: between two jobs of one guild, each other waiting guild gets at most one turn', () => {
  const s = new FairScheduler<SchedulableJob>();
  let n = 0;
  const add = (guildId: string, userId: string, count: number): void => {
    for (let i = 0; i < count; i++) s.push({ id: `${guildId}/${userId}/${n++}`, guildId, userId });
  };
  add('A', 'a1', 50);
  add('B', 'b1', 3);
  add('C', 'c1', 1);
  add('A', 'a2', 2);
  const order = s.order().map((j) => j.id);
  assert.deepEqual(order.slice(0, 7).map((id) => id.split('/').slice(0, 2).join('/')), [
    'A/a1', 'B/b1', 'C/c1', 'A/a2', 'B/b1', 'A/a1', 'B/b1',
  ]);
  // After B and C run out, A's users keep alternating until a2 runs out.
  assert.deepEqual(order.slice(7, 9).map((id) => id.split('/')[1]), ['a2', 'a1']);
  assert.ok(order.slice(9).every((id) => id.startsWith('A/a1/')));
});

test('priority (restored interrupted) jobs go before every guild', () => {
  const s = new FairScheduler<SchedulableJob>();
  s.push({ id: 'x', guildId: 'A', userId: 'u' });
  s.push({ id: 'resumed', guildId: 'B', userId: 'v' }, { priority: true });
  assert.deepEqual(s.order().map((j) => j.id), ['resumed', 'x']);
  assert.equal(s.next()?.id, 'resumed');
  assert.throws(() => s.push({ id: 'x', guildId: 'A', userId: 'u' }), /already waiting/);
});
