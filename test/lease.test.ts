import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { setImmediate as tick } from 'node:timers/promises';
import { join } from 'node:path';
import { CheckpointFile, Checkpoint } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import { currentIdentity, Lease, LEASE_TTL_MS, type Identity } from '../pipeline/lease.ts';
import { selfStamp } from '../pipeline/liveness.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { MemoryStore } from './support/memory-store.ts';
import { withTemp } from './support/scope.ts';
import { drain, outcome, PENDING } from './support/settle.ts';

const isLocked = (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_LOCKED';
const isLost = (err: unknown) => err instanceof ExportError && err.code === 'LEASE_LOST';
const KEY = '_staging/20261128T111000Z/lease.json';

/** A holder as another process would write it. */
function holder(fields: Partial<Record<string, unknown>>): string {
  const now = Date.now();
  return JSON.stringify({
    run_id: 'deadbeef',
    ...selfStamp(),
    acquired_at: new Date(now).toISOString(),
    renewed_at: new Date(now).toISOString(),
    expires_at: new Date(now + LEASE_TTL_MS).toISOString(),
    ...fields,
  });
}

async function place(dir: string, text: string): Promise<void> {
  await new LocalStore(dir).write(KEY, text);
}

test('a second holder is refused with OUTPUT_LOCKED naming the holder while the first holds the lease', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const first = await Lease.acquire(store, KEY);
    await assert.rejects(Lease.acquire(store, KEY), (err: unknown) => isLocked(err) && /pid \d+ on \S+, running for \d+ s/.test((err as Error).message));
    await first.release();
    const again = await Lease.acquire(store, KEY);
    await again.release();
    assert.deepEqual(await readdir(join(dir, '_staging/20261128T111000Z')), [], 'release removes it');
  });
});

test('a lease whose process is gone from this machine is taken over at once', async () => {
  await withTemp(async (dir) => {
    await place(dir, holder({ pid: 2 ** 22 + 7, pid_start: '1' }));
    const lease = await Lease.acquire(new LocalStore(dir), KEY);
    await lease.release();
  });
});

test('a container restarted as the same pid does not lock itself out: a pid running with another start time is not the holder', async () => {
  await withTemp(async (dir) => {
    const me = selfStamp();
    // Written by "this pid" before a restart: same host, boot and pid, another start time.
    await place(dir, holder({ pid: me.pid, pid_start: '12345', run_id: 'before01' }));
    const lease = await Lease.acquire(new LocalStore(dir), KEY);
    await lease.release();
    // And a pid that runs but started at another moment than the lease says.
    const other: Identity = { ...currentIdentity(), probe: () => '999999' };
    await place(dir, holder({ pid: 4242, pid_start: '1' }));
    const taken = await Lease.acquire(new LocalStore(dir), KEY, { identity: other });
    await taken.release();
  });
});

test('a lease of another host is taken over only once it expired', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await place(dir, holder({ host: 'another-pod', pid: 1 }));
    await assert.rejects(Lease.acquire(store, KEY), isLocked);
    await place(dir, holder({ host: 'another-pod', pid: 1, expires_at: new Date(Date.now() - 1).toISOString() }));
    const lease = await Lease.acquire(store, KEY);
    await lease.release();
  });
});

test('contenders racing for a stale lease: exactly one wins in every round, the others get OUTPUT_LOCKED', async () => {
  const random = mulberry32(7);
  for (let round = 0; round < 12; round++) {
    await withTemp(async (dir) => {
      if (round % 2 === 1) await place(dir, holder({ host: 'gone-pod', expires_at: new Date(Date.now() - 1000).toISOString() }));
      const contenders = 2 + Math.floor(random() * 5);
      // Each contender is its own run (run id), live (this process), on its own store object.
      const results = await Promise.allSettled(Array.from({ length: contenders }, () => Lease.acquire(new LocalStore(dir), KEY, { identity: currentIdentity() })));
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1, `round ${round}: ${won.length} winners of ${contenders}`);
      for (const r of results) if (r.status === 'rejected') assert.ok(isLocked(r.reason), `round ${round}: ${String(r.reason)}`);
      await (won[0] as PromiseFulfilledResult<Lease>).value.release();
      assert.deepEqual((await readdir(join(dir, '_staging/20261128T111000Z'))).filter((f) => f.includes('.cas.')), [], 'no claim left behind');
    });
  }
});

test('a holder whose lease was taken over learns it at its next renewal and can commit nothing more', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    let now = Date.now();
    const clock = () => now;
    const cpKey = '_staging/20261128T111000Z/checkpoint.json';
    const paused = await Lease.acquire(store, KEY, { now: clock, renewMs: 3_600_000 });
    const cp = new Checkpoint('20261128T111000Z', new Date(), { format: 'csv', pathPrefix: '/', statuses: [], endpoint: null, schemaVersion: 1, lastUsed: 'off', accounts: 'self', shard: null });
    const file = await CheckpointFile.create(store, cpKey, cp);
    // The holder freezes past its TTL; another run takes over and writes the checkpoint (its resume).
    now += LEASE_TTL_MS + 1000;
    const other = await Lease.acquire(new LocalStore(dir), KEY, { now: clock, identity: { ...currentIdentity(), stamp: { ...selfStamp(), host: 'other-host' } } });
    const theirs = (await CheckpointFile.load(store, cpKey))!;
    theirs.checkpoint.beginResume();
    await theirs.file.save(theirs.checkpoint);
    // The frozen holder wakes up.
    assert.throws(() => paused.assertHeld(), isLost, 'its TTL ran out: it must not commit');
    await paused.renew();
    assert.equal(paused.signal.aborted, true, 'the renewal found the lease taken');
    await assert.rejects(file.save(cp), isLost, 'and its checkpoint save is fenced');
    await paused.release();
    assert.doesNotThrow(() => other.assertHeld());
    await other.release();
  });
});

test('an unreadable lease file is stale and taken over', async () => {
  await withTemp(async (dir) => {
    await new LocalStore(dir).write(KEY, '');
    await writeFile(join(dir, KEY), '{"half');
    const lease = await Lease.acquire(new LocalStore(dir), KEY);
    await lease.release();
  });
});

/** An identity on its own host (so only time tells whether it is alive), with a fixed run id. */
function identity(host: string, runId = `${host}0000`.slice(0, 8)): Identity {
  return { runId, stamp: { host, pid: 100, pid_start: '1', boot_id: 'b' }, probe: () => '1' };
}

const T0 = Date.parse('2026-11-28T11:10:00.000Z');
const TTL = 30_000;

/** A lease of pod-a renewing itself every 5 s (on the test's mocked timers), with its fake clock and how many renewals it wrote. */
async function renewingLease() {
  const store = new MemoryStore();
  const clock = { now: T0 };
  const lease = await Lease.acquire(store, KEY, { identity: identity('pod-a'), now: () => clock.now, renewMs: 5_000 });
  const renewals = () => store.log.filter((l) => l === `write ${KEY}`).length - 1;
  return { store, clock, lease, renewals };
}

/** A slow store: every write waits until `open()` (which also ends the holding); `held()` counts the writes held. */
function holdWrites(store: MemoryStore): { open: () => void; held: () => number } {
  const waiting: (() => void)[] = [];
  store.hook = (op) => {
    if (op !== 'write') return;
    return new Promise<void>((resolve) => waiting.push(resolve));
  };
  return {
    open: () => {
      store.hook = undefined;
      for (const resume of waiting) resume();
    },
    held: () => waiting.length,
  };
}

test('the lease names its holder and expires one TTL after its last renewal; a renewal keeps when it was acquired', async () => {
  const store = new MemoryStore();
  let now = T0;
  const lease = await Lease.acquire(store, KEY, { identity: identity('pod-a', 'aaaa1111'), now: () => now, renewMs: 3_600_000 });
  assert.equal(lease.runId, 'aaaa1111');
  assert.equal(lease.key, KEY);
  const written = () => JSON.parse(store.text(KEY)!);
  assert.deepEqual(written(), {
    run_id: 'aaaa1111',
    host: 'pod-a',
    pid: 100,
    pid_start: '1',
    boot_id: 'b',
    acquired_at: '2026-11-28T11:10:00.000Z',
    renewed_at: '2026-11-28T11:10:00.000Z',
    expires_at: '2026-11-28T11:10:30.000Z',
  });
  now += 7_000;
  await lease.renew();
  assert.deepEqual([written().acquired_at, written().renewed_at, written().expires_at], ['2026-11-28T11:10:00.000Z', '2026-11-28T11:10:07.000Z', '2026-11-28T11:10:37.000Z']);
  now += TTL - 1;
  assert.doesNotThrow(() => lease.assertHeld(), 'renewed within its TTL');
  await lease.release();
});

test('a lease is held strictly less than one TTL after its last renewal, and taken over strictly after it expired', async () => {
  const store = new MemoryStore();
  let now = T0;
  const clock = () => now;
  const holder = await Lease.acquire(store, KEY, { identity: identity('pod-a'), now: clock, ttlMs: TTL, renewMs: 3_600_000 });
  now = T0 + TTL;
  await assert.rejects(Lease.acquire(store, KEY, { identity: identity('pod-b'), now: clock }), isLocked, 'at its expiry it is not stale yet');
  assert.throws(() => holder.assertHeld(), (err: unknown) => isLost(err) && /not renewed within its TTL/.test((err as Error).message), 'but its holder no longer commits');
  assert.equal(holder.signal.aborted, true);
  now += 1;
  const taker = await Lease.acquire(store, KEY, { identity: identity('pod-b'), now: clock });
  assert.equal(JSON.parse(store.text(KEY)!).host, 'pod-b');
  await taker.release();
  await holder.release();
});

test('the refusal says who holds the lease, for how long, and when it expires', async () => {
  const store = new MemoryStore();
  let now = T0;
  await Lease.acquire(store, KEY, { identity: identity('pod-a'), now: () => now, renewMs: 3_600_000 });
  now = T0 + 12_400;
  await assert.rejects(Lease.acquire(store, KEY, { identity: identity('pod-b'), now: () => now }), (err: unknown) => {
    assert.ok(isLocked(err));
    assert.equal(
      (err as Error).message,
      'another run (pid 100 on pod-a, running for 12 s) holds mem://root/_staging/20261128T111000Z/lease.json; this is temporary: rerun later (its lease expires in 18 s, at 2026-11-28T11:10:30.000Z, unless it renews it: it does every 5 s while it runs)',
    );
    assert.equal((err as ExportError).context.file, `mem://root/${KEY}`);
    return true;
  });
  now = T0 + 12_600;
  await assert.rejects(Lease.acquire(store, KEY, { identity: identity('pod-b'), now: () => now }), /running for 13 s\) .* expires in 18 s,/);
});

test('a lease that is not a lease (any field missing or wrong) is stale and taken over', async () => {
  const good = JSON.parse(holder({ host: 'pod-z' }));
  for (const broken of [{ run_id: 7 }, { run_id: undefined }, { host: null }, { pid: '1' }, { expires_at: 'never' }, { expires_at: undefined }]) {
    const store = new MemoryStore();
    await store.write(KEY, JSON.stringify({ ...good, ...broken }));
    const lease = await Lease.acquire(store, KEY, { identity: identity('pod-a') });
    assert.equal(JSON.parse(store.text(KEY)!).host, 'pod-a', JSON.stringify(broken));
    await lease.release();
  }
  const store = new MemoryStore();
  await store.write(KEY, JSON.stringify(good));
  await assert.rejects(Lease.acquire(store, KEY, { identity: identity('pod-a') }), isLocked, 'the unbroken one is live');
});

test('a lost lease aborts its signal with LEASE_LOST, once, and renews no more', async () => {
  const store = new MemoryStore();
  let now = T0;
  const lease = await Lease.acquire(store, KEY, { identity: identity('pod-a'), now: () => now, renewMs: 3_600_000 });
  await store.write(KEY, holder({ host: 'pod-b' })); // taken over behind its back
  await lease.renew();
  assert.equal(lease.signal.aborted, true);
  const reason = lease.signal.reason as ExportError;
  assert.ok(isLost(reason) && reason.message.includes('another run took it over') && reason.message.includes(`mem://root/${KEY}`) && reason.context.file === `mem://root/${KEY}`, reason.message);
  assert.throws(() => lease.assertHeld(), (err) => err === reason);
  const writes = store.log.length;
  await lease.renew();
  assert.equal(store.log.length, writes, 'no write after the loss');
  now += 10 * TTL;
  assert.throws(() => lease.assertHeld(), (err) => err === reason, 'the first reason stays');
  await lease.release();
  assert.equal(JSON.parse(store.text(KEY)!).host, 'pod-b', 'release leaves the new holder alone');
  assert.throws(() => lease.assertHeld(), (err) => err === reason, 'a release after the loss keeps its reason');
});

test('a lease lost twice over (its TTL ran out while a renewal was in flight, then that renewal found it taken) keeps its first reason', async () => {
  const store = new MemoryStore();
  let now = T0;
  const lease = await Lease.acquire(store, KEY, { identity: identity('pod-a'), now: () => now, renewMs: 3_600_000 });
  const slow = holdWrites(store);
  const renewing = lease.renew();
  await drain();
  now += TTL;
  assert.throws(() => lease.assertHeld(), (err: unknown) => isLost(err) && /not renewed within its TTL/.test((err as Error).message), 'frozen past its TTL');
  store.hook = undefined;
  await store.write(KEY, holder({ host: 'pod-b' }));
  slow.open();
  await renewing;
  const reason = lease.signal.reason as ExportError;
  assert.ok(/not renewed within its TTL/.test(reason.message), reason.message);
  assert.throws(() => lease.assertHeld(), (err) => err === reason, 'the run reports the reason its signal was aborted with');
  await lease.release();
});

test('quiesce and release each wait for the renewal in flight, then renew no more; quiesce keeps the lease (for the last step), release deletes it', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  for (const stop of ['quiesce', 'release'] as const) {
    const { store, clock, lease, renewals } = await renewingLease();
    const slow = holdWrites(store);
    clock.now += 5_000;
    t.mock.timers.tick(5_000);
    assert.equal(slow.held(), 1, `${stop}: a renewal in flight`);
    const stopping = lease[stop]();
    assert.equal(await outcome(stopping), PENDING, `${stop} waits for it`);
    assert.notEqual(store.text(KEY), undefined, `${stop}: the lease is still there`);
    slow.open();
    await stopping;
    t.mock.timers.tick(50_000);
    await drain();
    assert.equal(renewals(), 1, `${stop}: the renewal in flight completed, and no other started`);
    if (stop === 'quiesce') {
      assert.equal(JSON.parse(store.text(KEY)!).renewed_at, new Date(T0 + 5_000).toISOString(), 'quiesce keeps the renewed lease');
      assert.doesNotThrow(() => lease.assertHeld(), 'and still holds it');
      await lease.release();
    }
    assert.equal(store.text(KEY), undefined, `${stop}: release deletes it`);
  }
});

test('a renewal that fails for a passing store error is retried; the lease is lost only once its TTL ran out', async () => {
  const store = new MemoryStore();
  let now = T0;
  const lease = await Lease.acquire(store, KEY, { identity: identity('pod-a'), now: () => now, renewMs: 3_600_000 });
  const flaky = Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
  store.hook = (op) => {
    if (op === 'write') throw flaky;
  };
  now += TTL - 1;
  await lease.renew();
  assert.equal(lease.signal.aborted, false, 'before its TTL a failed renewal is not a loss');
  store.hook = undefined;
  await lease.renew();
  now += TTL - 1;
  assert.doesNotThrow(() => lease.assertHeld(), 'the retry renewed it');
  store.hook = (op) => {
    if (op === 'write') throw flaky;
  };
  now += 1;
  await lease.renew();
  assert.ok(isLost(lease.signal.reason) && /could not be renewed before it expired/.test((lease.signal.reason as Error).message));
  await lease.release();
});

test('the lease renews itself every renewMs in the background, one renewal at a time', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const { store, clock, lease, renewals } = await renewingLease();
  const slow = holdWrites(store);
  clock.now += 5_000;
  t.mock.timers.tick(4_999);
  assert.equal(renewals(), 0);
  t.mock.timers.tick(1);
  assert.equal(renewals(), 1, 'a renewal at renewMs');
  t.mock.timers.tick(15_000);
  assert.equal(slow.held(), 1, 'ticks while a renewal is in flight start no other');
  slow.open();
  await drain();
  clock.now += 5_000;
  t.mock.timers.tick(5_000);
  await drain();
  assert.equal(renewals(), 2);
  assert.equal(JSON.parse(store.text(KEY)!).renewed_at, new Date(clock.now).toISOString());
  await lease.release();
});

test('release deletes the lease; a lease taken over meanwhile is left alone; a store error is raised', async () => {
  const store = new MemoryStore();
  const lease = await Lease.acquire(store, KEY, { identity: identity('pod-a'), renewMs: 3_600_000 });
  await lease.release();
  assert.equal(store.text(KEY), undefined);
  assert.throws(() => lease.assertHeld(), (err: unknown) => isLost(err) && /released/.test((err as Error).message), 'released: it commits nothing more');
  await lease.release();
  // Taken over between our last renewal and the release: their lease stays.
  const second = await Lease.acquire(store, KEY, { identity: identity('pod-a'), renewMs: 3_600_000 });
  await store.write(KEY, holder({ host: 'pod-b' }));
  await second.release();
  assert.equal(JSON.parse(store.text(KEY)!).host, 'pod-b');
  // A store that fails the delete.
  const other = new MemoryStore();
  const third = await Lease.acquire(other, KEY, { identity: identity('pod-a'), renewMs: 3_600_000 });
  const broken = new Error('EIO');
  other.hook = (op) => {
    if (op === 'delete') throw broken;
  };
  await assert.rejects(third.release(), (err) => err === broken);
});

test('a contender that loses every race three times is refused, naming the holder it finally reads, or that someone is taking it', async () => {
  for (const finally_ of ['live', 'garbage'] as const) {
    const store = new MemoryStore();
    let writes = 0;
    // Before each of our writes, another contender writes a stale (expired) lease: our condition fails.
    store.hook = async (op, key) => {
      if (op !== 'write' || key !== KEY) return;
      writes++;
      store.hook = undefined;
      await store.write(KEY, writes < 3 || finally_ === 'garbage' ? '{"torn' : holder({ host: 'pod-b' }));
      store.hook = hookAgain;
    };
    const hookAgain = store.hook;
    await assert.rejects(Lease.acquire(store, KEY, { identity: identity('pod-a') }), (err: unknown) => {
      assert.ok(isLocked(err), String(err));
      if (finally_ === 'live') assert.match((err as Error).message, /pid \d+ on pod-b/);
      else assert.equal((err as Error).message, `another run is taking mem://root/${KEY} at this moment; rerun later`);
      assert.equal((err as ExportError).context.file, `mem://root/${KEY}`, 'the refusal names the lease');
      return true;
    });
    assert.equal(writes, 3, 'three attempts');
  }
});

test('a store error while acquiring is raised as it is', async () => {
  const store = new MemoryStore();
  const broken = new Error('EACCES');
  store.hook = (op) => {
    if (op === 'write') throw broken;
  };
  await assert.rejects(Lease.acquire(store, KEY, { identity: identity('pod-a') }), (err) => err === broken);
});

test('a fresh identity is this process with a new 8-hex-digit run id', () => {
  const a = currentIdentity();
  const b = currentIdentity();
  assert.match(a.runId, /^[0-9a-f]{8}$/);
  assert.notEqual(a.runId, b.runId);
  assert.deepEqual(a.stamp, selfStamp());
  assert.equal(a.probe(process.pid), selfStamp().pid_start);
});

/**
 * The lease as a model: seeded rounds of contenders on separate hosts sharing one
 * store and one fake clock, acting in random order (acquire, renew, release,
 * freeze past the TTL), the store yielding at random inside every operation so
 * their conditional writes interleave, and failing now and then. After every
 * step at most one contender may commit (passes assertHeld), and every contender
 * whose lease was taken over knows it at its next renewal.
 */
test('racing contenders on one fake clock: never two holders that may commit, and a holder overtaken learns it at its next renewal', async () => {
  const random = mulberry32(31337);
  for (let round = 0; round < 60; round++) {
    let now = T0;
    const store = new MemoryStore(async (op) => {
      for (let y = Math.floor(random() * 3); y > 0; y--) await tick();
      if (op === 'write' && random() < 0.05) throw Object.assign(new Error('flaky store'), { code: 'EIO' });
    });
    const n = 2 + Math.floor(random() * 3);
    const held: (Lease | undefined)[] = Array.from({ length: n }, () => undefined);
    const label = `round ${round}`;
    for (let step = 0; step < 12; step++) {
      await Promise.allSettled(
        held.map(async (lease, i) => {
          const r = random();
          if (!lease && r < 0.5) {
            try {
              held[i] = await Lease.acquire(store, KEY, { identity: identity(`pod-${i}`, `run0000${i}`), now: () => now, ttlMs: TTL, renewMs: 3_600_000 });
            } catch (err) {
              assert.ok(isLocked(err) || (err as NodeJS.ErrnoException).code === 'EIO', `${label}: ${String(err)}`);
            }
          } else if (lease && r < 0.6) await lease.renew();
          else if (lease && r < 0.7) {
            await lease.release().catch((err: unknown) => assert.equal((err as NodeJS.ErrnoException).code, 'EIO'));
            held[i] = undefined;
          }
        }),
      );
      if (random() < 0.4) now += Math.floor(random() * 1.5 * TTL);
      const committers = held.filter((lease) => {
        if (!lease) return false;
        try {
          lease.assertHeld();
          return true;
        } catch (err) {
          assert.ok(isLost(err), String(err));
          return false;
        }
      });
      assert.ok(committers.length <= 1, `${label} step ${step}: ${committers.length} holders may commit`);
      // Whoever the store names is the only one that may still renew successfully.
      const named = store.text(KEY) === undefined ? undefined : JSON.parse(store.text(KEY)!).run_id;
      for (const lease of held) {
        if (!lease || lease.runId === named) continue;
        store.hook = undefined;
        await lease.renew();
        assert.equal(lease.signal.aborted, true, `${label} step ${step}: ${lease.runId} lost the lease to ${named} and must know it`);
      }
      store.hook = async () => {
        for (let y = Math.floor(random() * 3); y > 0; y--) await tick();
        if (random() < 0.05) throw Object.assign(new Error('flaky store'), { code: 'EIO' });
      };
    }
    store.hook = undefined;
    for (const lease of held) await lease?.release();
  }
});
