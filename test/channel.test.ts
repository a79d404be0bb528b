import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { Channel } from '../pipeline/source/channel.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { allSettleOrDeadlock, outcome, PENDING } from './support/settle.ts';

/**
 * The channel as a model: many seeded rounds of producers pushing numbered items
 * and one consumer reading them, each yielding at random places, and in two rounds
 * of three a close or a failure injected at a random moment. After every step the
 * queue holds no more than its capacity; after every round every producer and the
 * consumer ended (nobody left waiting), every push that resolved was delivered
 * exactly once and in each producer's order, a push that was refused threw, and a
 * failure reached the consumer after the items queued before it.
 */
test('racing producers and one consumer: bounded, in order, nothing lost, nobody left waiting, whatever closes it', async () => {
  const random = mulberry32(81);
  for (let round = 0; round < 300; round++) {
    const capacity = Math.floor(random() * 4); // 0 means 1
    const channel = new Channel<string>(capacity);
    const producers = 1 + Math.floor(random() * 5);
    const perProducer = Math.floor(random() * 12);
    const ending = random() < 1 / 3 ? 'close' : random() < 0.5 ? 'fail' : 'drain';
    const endAt = Math.floor(random() * producers * perProducer);
    const label = `round ${round} (capacity ${capacity}, ${producers}×${perProducer}, ${ending} at ${endAt})`;
    const boom = new Error(`boom ${round}`);
    const accepted: string[] = [];
    const refused: string[] = [];
    let pushes = 0;
    const bounded = () => assert.ok(channel.size <= Math.max(1, capacity), `${label}: ${channel.size} queued`);
    const end = () => (ending === 'fail' ? channel.fail(boom) : channel.close());
    const producer = async (p: number) => {
      for (let i = 0; i < perProducer; i++) {
        const item = `${p}:${i}`;
        if (random() < 0.5) await tick();
        try {
          await channel.push(item);
          accepted.push(item);
        } catch (err) {
          assert.match((err as Error).message, /closed/, label);
          refused.push(item);
        }
        bounded();
        if (ending !== 'drain' && pushes++ === endAt) end();
      }
    };
    const received: string[] = [];
    let consumerError: unknown;
    const consumer = async () => {
      try {
        for await (const item of channel) {
          received.push(item);
          bounded();
          if (random() < 0.5) await tick();
        }
      } catch (err) {
        consumerError = err;
      }
    };
    const all = Array.from({ length: producers }, (_, p) => producer(p));
    const reading = consumer();
    await allSettleOrDeadlock(all, `${label} producers`);
    if (ending === 'drain' || pushes <= endAt) end(); // every producer done: end it now
    await allSettleOrDeadlock([reading], `${label} consumer`);
    assert.deepEqual([...received].sort(), [...accepted].sort(), `${label}: every accepted item delivered once, nothing else`);
    for (let p = 0; p < producers; p++) {
      const mine = received.filter((x) => x.startsWith(`${p}:`));
      assert.deepEqual(mine, [...mine].sort((a, b) => Number(a.split(':')[1]) - Number(b.split(':')[1])), `${label}: producer ${p}'s order`);
    }
    assert.equal(accepted.length + refused.length, producers * perProducer, `${label}: every push settled`);
    assert.equal(consumerError, ending === 'fail' ? boom : undefined, `${label}: the consumer ends with the failure, after the queued items`);
  }
});

test('a push waits while the channel is full and goes on as soon as the consumer takes an item', async () => {
  const channel = new Channel<number>(2);
  await channel.push(1);
  await channel.push(2);
  const third = channel.push(3);
  assert.equal(await outcome(third), PENDING, 'full: the producer waits (backpressure)');
  const it = channel[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  assert.equal(await outcome(third), undefined, 'room again: the push completes');
  assert.equal(channel.size, 2);
});

test('a capacity below one still holds one item', async () => {
  const channel = new Channel<number>(0);
  assert.equal(await outcome(channel.push(1)), undefined);
  assert.equal(await outcome(channel.push(2)), PENDING);
});

test('the consumer waits for data, then sees items pushed later, and ends after a close once drained', async () => {
  const channel = new Channel<number>(4);
  const it = channel[Symbol.asyncIterator]();
  const first = it.next();
  assert.equal(await outcome(first), PENDING);
  await channel.push(7);
  assert.deepEqual(await outcome(first), { value: 7, done: false });
  await channel.push(8);
  channel.close();
  assert.deepEqual(await it.next(), { value: 8, done: false }, 'queued before the close: still delivered');
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  await assert.rejects(channel.push(9), /closed/);
});

test('a close wakes producers waiting for room: their pushes are refused', async () => {
  const channel = new Channel<number>(1);
  await channel.push(1);
  const waiting = channel.push(2);
  assert.equal(await outcome(waiting), PENDING);
  channel.close();
  await assert.rejects(waiting, /push on a closed channel/);
});

test('a failure ends the consumer with the error once the queued items are delivered', async () => {
  const channel = new Channel<number>(4);
  await channel.push(1);
  const boom = new Error('boom');
  channel.fail(boom);
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const x of channel) got.push(x);
  }, (err) => err === boom);
  assert.deepEqual(got, [1]);
});

test('thousands of items through a small channel come out in order (the queue compacts without losing any)', async () => {
  const channel = new Channel<number>(3);
  const n = 5000;
  const producing = (async () => {
    for (let i = 0; i < n; i++) await channel.push(i);
    channel.close();
  })();
  const got: number[] = [];
  let peak = 0;
  for await (const x of channel) {
    got.push(x);
    peak = Math.max(peak, channel.size);
    if (x % 7 === 0) await tick();
  }
  await producing;
  assert.equal(got.length, n);
  assert.ok(got.every((x, i) => x === i), 'in order, none lost or repeated');
  assert.ok(peak <= 3);
});

test('memory stays bounded by the capacity, not by how many items passed through: the channel compacts what was taken', async () => {
  const channel = new Channel<number>(4);
  const total = 10_000;
  let seen = 0;
  let largest = 0;
  const consumer = (async () => {
    for await (const item of channel) {
      assert.equal(item, seen, 'in order');
      seen++;
      largest = Math.max(largest, channel.footprint);
    }
  })();
  for (let i = 0; i < total; i++) await channel.push(i);
  channel.close();
  await consumer;
  assert.equal(seen, total);
  // Compaction once more than 1,024 slots were taken and they are over half the array.
  assert.ok(largest <= 2 * 1025 + 4, `at most ~2,050 slots held at once, whatever passed through (held ${largest} for ${total} items)`);
});
