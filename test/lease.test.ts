import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointFile, Checkpoint } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import { currentIdentity, Lease, LEASE_TTL_MS, type Identity } from '../pipeline/lease.ts';
import { selfStamp } from '../pipeline/liveness.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { withTemp } from './support/scope.ts';

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
  for (let round = 0; round < 40; round++) {
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
    const cp = new Checkpoint('20261128T111000Z', new Date(), { format: 'csv', pathPrefix: '/', statuses: [], endpoint: null, schemaVersion: 1 });
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
