import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { KeyBudget } from '../pipeline/source/budget.ts';
import { mulberry32 } from './fake-iam/random.ts';

/**
 * The key budget as a model: many seeded rounds of users racing for it, each
 * taking, reading a random share and settling, with yields (awaits) at random
 * places and a stop injected at a random moment in half the rounds. After every
 * round: every task ended (nobody left waiting), every grant settled, no more than
 * N keys read, and without a stop exactly N read when enough keys existed.
 */
test('racing users never read more than N keys, nobody is left waiting, and a stop wakes every waiter', async () => {
  const random = mulberry32(2026);
  for (let round = 0; round < 300; round++) {
    const max = 1 + Math.floor(random() * 30);
    const stop = new AbortController();
    const budget = new KeyBudget(max, stop.signal);
    const users = 1 + Math.floor(random() * 8);
    const pageSize = 1 + Math.floor(random() * 6);
    let read = 0;
    let available = Math.floor(random() * 60); // keys that exist, over all users
    const stopAt = random() < 0.5 ? Math.floor(random() * 40) : -1;
    let steps = 0;
    const user = async () => {
      for (;;) {
        const grant = await budget.take(pageSize);
        if (grant === 0) return;
        let used = 0;
        try {
          for (let y = Math.floor(random() * 3); y > 0; y--) await tick();
          if (steps++ === stopAt) stop.abort();
          used = Math.min(grant, available, 1 + Math.floor(random() * grant));
          available -= used;
          read += used;
        } finally {
          budget.settle(grant, used);
        }
        if (available === 0) return;
      }
    };
    const all = Promise.all(Array.from({ length: users }, user));
    const hung = await Promise.race([all.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 2000))]);
    assert.equal(hung, false, `round ${round}: a user was left waiting`);
    const label = `round ${round} (max ${max}, users ${users}, page ${pageSize}, stop at ${stopAt})`;
    assert.ok(read <= max, `${label}: read ${read} > ${max}`);
    assert.equal(budget.outstanding, 0, `${label}: every grant settled`);
    if (!stop.signal.aborted && available > 0) assert.equal(read, max, `${label}: stopped short with keys left`);
    if (!stop.signal.aborted) assert.equal(budget.exhausted, read === max, label);
    if (stop.signal.aborted) assert.equal(await budget.take(5), 0, `${label}: a take after the stop gets nothing`);
  }
});

test('a waiter is woken by the stop while others hold the whole allowance', async () => {
  const stop = new AbortController();
  const budget = new KeyBudget(3, stop.signal);
  const grant = await budget.take(3);
  assert.equal(grant, 3);
  const waiting = budget.take(2);
  stop.abort();
  assert.equal(await waiting, 0);
  budget.settle(grant, 1);
  assert.equal(budget.outstanding, 0);
});

test('settling more than was granted is a bug and throws', () => {
  const budget = new KeyBudget(5);
  assert.throws(() => budget.settle(2, 1), RangeError);
});
