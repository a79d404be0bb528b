import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { KeyBudget } from '../pipeline/source/budget.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { allSettleOrDeadlock, outcome, PENDING } from './support/settle.ts';

/**
 * The key budget as a model: many seeded rounds of users paging their own keys, as
 * the fan-out does (take a page's worth, read what the user has, settle, go on
 * until the user has no keys left or the budget says 0), with yields at random
 * places and a stop injected at a random moment in half the rounds. After every
 * step what is read plus reserved fits in N and `exhausted` agrees with it; after
 * every round nobody is left waiting, every grant is settled, and without a stop
 * exactly min(N, keys) were read: a user that met the allowance reserved by
 * others waited for it instead of giving up on keys it had.
 */
test('racing users read exactly min(N, keys that exist), never more, and nobody is left waiting, with or without a stop', async () => {
  const random = mulberry32(2026);
  for (let round = 0; round < 250; round++) {
    const max = 1 + Math.floor(random() * 30);
    const stop = new AbortController();
    const budget = new KeyBudget(max, stop.signal);
    const left = Array.from({ length: 1 + Math.floor(random() * 8) }, () => Math.floor(random() * 12));
    const total = left.reduce((a, b) => a + b, 0);
    const pageSize = 1 + Math.floor(random() * 6);
    const stopAt = random() < 0.5 ? Math.floor(random() * 40) : -1;
    const label = `round ${round} (max ${max}, keys ${left.join('/')}, page ${pageSize}, stop at ${stopAt})`;
    let read = 0;
    let steps = 0;
    // At every synchronous point: what is reserved plus what was read fits in N;
    // exhausted means N read and nothing reserved (a reservation may come back).
    const check = (where: string) => {
      const reserved = budget.outstanding;
      assert.ok(read + reserved <= max, `${label} ${where}: read ${read} + reserved ${reserved} > ${max}`);
      assert.equal(budget.exhausted, read >= max && reserved === 0, `${label} ${where}: exhausted exactly when N were read and nothing is reserved`);
    };
    const user = async (i: number) => {
      while (left[i]! > 0) {
        const grant = await budget.take(pageSize);
        assert.ok(grant >= 0 && grant <= pageSize, `${label}: grant ${grant}`);
        check('after take');
        if (grant === 0) return;
        let used = 0;
        try {
          for (let y = Math.floor(random() * 3); y > 0; y--) await tick();
          if (steps++ === stopAt) stop.abort();
          used = Math.min(grant, left[i]!);
          left[i]! -= used;
          read += used;
        } finally {
          budget.settle(grant, used);
        }
        check('after settle');
      }
    };
    await allSettleOrDeadlock(left.map((_, i) => user(i)), label);
    check('at the end');
    assert.equal(budget.outstanding, 0, `${label}: every grant settled`);
    if (!stop.signal.aborted) assert.equal(read, Math.min(max, total), `${label}: stopped short with keys left`);
    if (stop.signal.aborted) assert.equal(await budget.take(5), 0, `${label}: a take after the stop gets nothing`);
  }
});

test('while keys are left in the allowance, a take is granted at once, even while others hold reservations', async () => {
  const budget = new KeyBudget(10);
  assert.equal(await budget.take(4), 4);
  assert.equal(await outcome(budget.take(4)), 4, 'not made to wait for the first holder');
  assert.equal(await outcome(budget.take(4)), 2, 'what is left, not more');
  assert.equal(budget.outstanding, 10);
});

test('a user that finds the whole allowance reserved waits, and gets what a holder did not use', async () => {
  const budget = new KeyBudget(5);
  const grant = await budget.take(5);
  const waiting = budget.take(3);
  assert.equal(await outcome(waiting), PENDING, 'it waits instead of giving up');
  budget.settle(grant, 3);
  assert.equal(await outcome(waiting), 2);
  assert.equal(budget.exhausted, false, 'two keys are reserved again');
  budget.settle(2, 2);
  assert.equal(budget.exhausted, true);
});

test('a holder that read nothing (stopped, or the user had no keys) returns its whole grant', async () => {
  const budget = new KeyBudget(4);
  budget.settle(await budget.take(4), 0);
  assert.equal(budget.outstanding, 0);
  assert.equal(await outcome(budget.take(9)), 4, 'all of it is there again');
});

test('once N keys were read and nothing is reserved, a take gets 0 at once', async () => {
  const budget = new KeyBudget(2);
  budget.settle(await budget.take(5), 2);
  assert.equal(await outcome(budget.take(1)), 0);
  assert.equal(budget.exhausted, true);
});

test('the budget is not exhausted while keys are reserved that may come back', async () => {
  const budget = new KeyBudget(3);
  const grant = await budget.take(3);
  assert.equal(budget.exhausted, false, 'the holder may read fewer and return the rest');
  budget.settle(grant, 1);
  assert.equal(budget.exhausted, false);
});

test('a waiter is woken by the stop while others hold the whole allowance', async () => {
  const stop = new AbortController();
  const budget = new KeyBudget(3, stop.signal);
  const grant = await budget.take(3);
  assert.equal(grant, 3);
  const waiting = budget.take(2);
  assert.equal(await outcome(waiting), PENDING);
  stop.abort();
  assert.equal(await outcome(waiting), 0, 'woken by the stop itself, before any settlement');
  budget.settle(grant, 1);
  assert.equal(budget.outstanding, 0);
});

test('a budget made with a stop already given grants nothing', async () => {
  const budget = new KeyBudget(3, AbortSignal.abort());
  assert.equal(await outcome(budget.take(2)), 0);
});

test('settling more than was granted, fewer than zero, or more than is reserved is a bug and throws', async () => {
  const budget = new KeyBudget(5);
  assert.throws(() => budget.settle(2, 1), RangeError, 'nothing is reserved');
  const grant = await budget.take(3);
  assert.throws(() => budget.settle(grant, 4), RangeError, 'more used than granted');
  assert.throws(() => budget.settle(grant, -1), RangeError, 'a negative use');
  assert.throws(() => budget.settle(4, 1), RangeError, 'more than is reserved');
  assert.equal(budget.outstanding, 3, 'a refused settlement changes nothing');
  budget.settle(grant, 3);
  assert.equal(budget.exhausted, false);
});
