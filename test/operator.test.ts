import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { runCli, startCli, testEnv } from './support/cli.ts';
import { onlySnapshotDir } from './support/expect.ts';
import { withFake, withTemp } from './support/scope.ts';
import { until, untilNextSecond, untilOutput } from './support/wait.ts';

const oneLine = (stderr: string): string => {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, stderr);
  return lines[0]!;
};

test('--profile nosuch names the profile and says it does not exist', async () => {
  await withTemp(async (dir) => {
    await writeFile(join(dir, 'config'), '[profile real]\nregion = us-east-1\n');
    const r = await runCli(['--out', join(dir, 'out'), '--profile', 'nosuch', '--endpoint-url', 'http://127.0.0.1:9'], testEnv({ AWS_CONFIG_FILE: join(dir, 'config') }));
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /--profile nosuch: no such profile in .*config/);
  });
});

test('AWS_PROFILE together with AWS_ACCESS_KEY_ID: the SDK warning goes to the debug log, stderr keeps its one line', async () => {
  await withFake({ users: 5, seed: 1 }, async (fake) => {
    await withTemp(async (dir) => {
      await writeFile(join(dir, 'credentials'), '[ops]\naws_access_key_id = AKIDOPSOPSOPSOPSOPS1\naws_secret_access_key = ops-secret\n');
      const env = testEnv({ AWS_PROFILE: 'ops', AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'), IKE_PROGRESS_MS: '100000' });
      const r = await runCli(['--endpoint-url', fake.url, '--out', join(dir, 'out')], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(oneLine(r.stderr), /^iam-key-export: published snapshot/);
      assert.doesNotMatch(r.stdout + r.stderr, /Multiple credential sources/, 'not at info level');
      const debug = await runCli(['--endpoint-url', fake.url, '--out', join(dir, 'out2'), '--log-level', 'debug'], env);
      assert.equal(debug.code, 0, debug.stderr);
      assert.match(debug.stdout, /"event":"sdk".*Multiple credential sources/, 'at debug level, as a JSON line');
    });
  });
});

test('an endpoint whose host does not resolve: one line naming the host', async () => {
  await withTemp(async (dir) => {
    const r = await runCli(['--out', join(dir, 'out'), '--endpoint-url', 'http://iam.no-such-host.invalid', '--max-attempts', '1']);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /endpoint http:\/\/iam\.no-such-host\.invalid unreachable after retries \((ENOTFOUND|EAI_AGAIN): host iam\.no-such-host\.invalid not found\)/);
  });
});

test('--out under /proc fails at once with one line, without spinning', async () => {
  await withTemp(async (dir) => {
    // Against the start-up of the same command on this machine now (it may be loaded):
    // a run that retried or spun would take seconds more than --version does.
    const v0 = Date.now();
    assert.equal((await runCli(['--version'])).code, 0);
    const startup = Date.now() - v0;
    const t0 = Date.now();
    const r = await runCli(['--out', '/proc/nope/export', '--endpoint-url', 'http://127.0.0.1:9']);
    assert.equal(r.code, 1);
    assert.ok(Date.now() - t0 < 2 * startup + 3_000, `took ${Date.now() - t0} ms; --version took ${startup} ms`);
    assert.match(oneLine(r.stderr), /--out \/proc\/nope\/export: \/proc is on a pseudo file system/);
    void dir;
  });
});

test('start and end events carry the endpoint used (also from AWS_ENDPOINT_URL_IAM) and the account id', async () => {
  await withFake({ users: 5, seed: 1, accountId: '210987654321' }, async (fake) => {
    await withTemp(async (out) => {
      const r = await runCli(['--out', out], testEnv({ AWS_ENDPOINT_URL_IAM: fake.url }));
      assert.equal(r.code, 0, r.stderr);
      const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const start = events.find((e) => e.event === 'start')!;
      const end = events.find((e) => e.event === 'end')!;
      assert.equal(start.endpoint_url, fake.url);
      assert.equal(start.account_id, '210987654321');
      assert.equal(end.account_id, '210987654321');
      assert.match(r.stderr, /account=210987654321/);
    });
  });
});

test('access_keys/_LATEST names the newest published snapshot and a failing run leaves it as it was', async () => {
  await withFake({ users: 8, seed: 2, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv'];
      assert.equal((await runCli(args)).code, 0);
      const firstDoneAt = Date.now();
      const latest = join(out, 'access_keys', '_LATEST');
      const first = (await readFile(latest, 'utf8')).trim();
      assert.equal(`snapshot_id=${first}`, (await onlySnapshotDir(out)).split('/').at(-1));
      fake.configure({ listUsersDenied: true });
      assert.equal((await runCli(args)).code, 1);
      assert.equal((await readFile(latest, 'utf8')).trim(), first, 'unchanged by the failing run');
      fake.configure({ listUsersDenied: false });
      await untilNextSecond(firstDoneAt); // snapshot ids have second resolution
      assert.equal((await runCli(args)).code, 0);
      const second = (await readFile(latest, 'utf8')).trim();
      assert.ok(second > first, `${second} after ${first}`);
    });
  });
});


test('SIGINT ends the run within 10 s in every phase: asking who the caller is, exporting, finalizing', async () => {
  // Asking STS who the caller is, on an endpoint that answers slowly.
  await withFake({ users: 5, seed: 1, latencyMs: 20_000 }, async (fake) => {
    await withTemp(async (out) => {
      const cli = startCli(['--endpoint-url', fake.url, '--out', out]);
      await until(cli, () => fake.stats().totalCalls > 0);
      const t0 = Date.now();
      cli.kill('SIGINT');
      const r = await cli.done;
      assert.ok(Date.now() - t0 < 10_000, `identity: ${Date.now() - t0} ms`);
      assert.equal(r.code, 75, `identity: ${r.stderr}`);
      assert.match(r.stderr, /stopped \(signal\) before reading anything/);
    });
  });
  // Finalizing: held at the first data file written (the fault-point hook), SIGINT sent
  // there, then let go: finalize must notice the stop before its other files.
  await withFake({ users: 30, seed: 4, keysPerUser: { min: 4, max: 8 } }, async (fake) => {
    await withTemp(async (out) => {
      const resume = join(out, '..', `${basename(out)}.go-on`);
      const cli = startCli(['--endpoint-url', fake.url, '--out', out, '--format', 'parquet'], testEnv({ IKE_ROWS_PER_FILE: '10', IKE_FAULT_POINT: 'data-file-written', IKE_FAULT_PAUSE: resume }));
      await untilOutput(cli, () => cli.stderr().includes('fault point data-file-written paused'), 'finalize held at its first data file');
      const t0 = Date.now();
      cli.kill('SIGINT');
      await writeFile(resume, '');
      const r = await cli.done;
      assert.ok(Date.now() - t0 < 10_000, `finalize: ${Date.now() - t0} ms`);
      assert.equal(r.code, 75, `finalize: ${r.stderr}`);
      assert.match(r.stderr, /stopped \(signal\)/);
      assert.equal(existsSync(join(out, 'access_keys')) && readdirSync(join(out, 'access_keys')).some((d) => d.startsWith('snapshot_id=')), false, 'nothing published');
      const again = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'parquet']);
      assert.equal(again.code, 0, again.stderr);
      await rm(resume, { force: true });
    });
  });
});

test('--keep 2 keeps the newest two published snapshots, deletes older ones only after publishing, and never touches staging', async () => {
  await withFake({ users: 6, seed: 3, keysPerUser: { min: 1, max: 1 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--last-used', 'off'];
      const ids: string[] = [];
      let lastRun = 0;
      for (let i = 0; i < 3; i++) {
        if (i > 0) await untilNextSecond(lastRun); // snapshot ids have second resolution
        assert.equal((await runCli(args)).code, 0);
        lastRun = Date.now();
        ids.push((await readFile(join(out, 'access_keys', '_LATEST'), 'utf8')).trim());
      }
      // An unfinished snapshot in staging, and a failing run with --keep 1: nothing deleted.
      await untilNextSecond(lastRun);
      assert.equal((await runCli([...args, '--max-items', '2'])).code, 75);
      const staged = readdirSync(join(out, '_staging'));
      fake.configure({ listUsersDenied: true });
      assert.equal((await runCli([...args, '--keep', '1'])).code, 1);
      fake.configure({ listUsersDenied: false });
      assert.deepEqual(readdirSync(join(out, 'access_keys')).filter((d) => d.startsWith('snapshot_id=')).length, 3, 'a failing run deletes nothing');
      assert.deepEqual(readdirSync(join(out, '_staging')), staged, 'staging untouched');
      assert.equal((await runCli([...args, '--keep', '2'])).code, 0, 'resumes the staged snapshot and publishes it');
      const left = readdirSync(join(out, 'access_keys')).filter((d) => d.startsWith('snapshot_id=')).sort();
      assert.equal(left.length, 2);
      assert.ok(left.every((d) => !d.endsWith(ids[0]!) && !d.endsWith(ids[1]!)), `the two oldest went: ${left.join(', ')}`);
    });
  });
});
