import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Lease } from '../pipeline/lease.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { runCli } from './support/cli.ts';
import { withFake, withTemp } from './support/scope.ts';

// The lease as the operator meets it, through the CLI (child processes: slow, so
// kept apart from the unit tests of lease.ts that `make mutate` runs per mutant).
test('a run meeting a snapshot whose lease another process holds exits 75, naming the holder and when its lease expires', async () => {
  await withFake({ users: 20, seed: 3, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv'];
      assert.equal((await runCli([...args, '--max-items', '3'])).code, 75);
      const [id] = await readdir(join(out, '_staging'));
      // Held explicitly (no race with a second CLI run that might already be over).
      const held = await Lease.acquire(new LocalStore(out), `_staging/${id}/lease.json`);
      try {
        const r = await runCli(args);
        assert.equal(r.code, 75, r.stderr);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, new RegExp(`another run \\(pid ${process.pid} on \\S+, running for \\d+ s\\) holds .*lease\\.json; this is temporary: rerun later \\(its lease expires`));
      } finally {
        await held.release();
      }
      assert.equal((await runCli(args)).code, 0, 'once released, the rerun finishes');
    });
  });
});
