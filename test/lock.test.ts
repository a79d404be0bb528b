import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExportError } from '../pipeline/errors.ts';
import { acquireLock, LEASE_EXPIRY_MS, LOCK_FILE } from '../pipeline/lock.ts';
import { runCli, startCli } from './support/cli.ts';
import { withFake, withTemp } from './support/scope.ts';

const isLocked = (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_LOCKED';

test('a second run on the same --out is refused while the first holds the lock', async () => {
  await withTemp(async (dir) => {
    const first = await acquireLock(dir);
    await assert.rejects(acquireLock(dir), isLocked);
    await first.release();
    const again = await acquireLock(dir);
    await again.release();
  });
});

test('a lock left by a process that is gone on this host is taken over', async () => {
  await withTemp(async (dir) => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ pid: dead, host: hostname(), since: new Date().toISOString() }));
    const lock = await acquireLock(dir);
    await lock.release();
  });
});

test('a lock from another host is taken over only once its lease expired', async () => {
  await withTemp(async (dir) => {
    const path = join(dir, LOCK_FILE);
    await writeFile(path, JSON.stringify({ pid: 1, host: 'another-pod', since: new Date().toISOString() }));
    await assert.rejects(acquireLock(dir), isLocked);
    const old = new Date(Date.now() - LEASE_EXPIRY_MS - 1000);
    await utimes(path, old, old);
    const lock = await acquireLock(dir);
    await lock.release();
  });
});

test('two overlapping CLI runs: the second exits 1 with one line, the first publishes', async () => {
  await withFake({ users: 60, seed: 1, keysPerUser: { min: 0, max: 2 }, latencyMs: 20 }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '1'];
      const first = startCli(args);
      while (!first.stdout().includes('"event":"start"')) await sleep(20);
      const second = await runCli(args);
      assert.equal(second.code, 1);
      assert.equal(second.stderr.trim().split('\n').length, 1);
      assert.match(second.stderr, /another run \(pid \d+ on .*\) is exporting into this --out/);
      assert.equal((await first.done).code, 0);
    });
  });
});
