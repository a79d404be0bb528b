import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeIam } from './fake-iam/server.ts';
import { runCli } from './support/cli.ts';

/** A digest of every file under `dir` (names and bytes). */
async function treeDigest(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      hash.update(p);
      if (e.isDirectory()) await walk(p);
      else hash.update(await readFile(p));
    }
  };
  await walk(dir);
  return hash.digest('hex');
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

test('fourteen kinds of bad input each exit with the documented code and one clear line, leaving published snapshots untouched', async () => {
  const fake = await startFakeIam({ users: 25, seed: 13, keysPerUser: { min: 1, max: 2 } });
  const tmp = await mkdtemp(join(tmpdir(), 'ike-bad-'));
  const out = join(tmp, 'out');
  try {
    const base = ['--endpoint-url', fake.url, '--out', out];
    assert.equal((await runCli([...base, '--format', 'csv'])).code, 0);
    const published = join(out, 'access_keys');
    const digest = await treeDigest(published);
    await writeFile(join(tmp, 'a-file'), 'not a directory');
    const deadPort = await closedPort();

    const cases: { name: string; args: string[]; code: number; line: RegExp; before?: () => Promise<void>; after?: () => Promise<void> }[] = [
      { name: 'bad --format', args: [...base, '--format', 'xlsx'], code: 2, line: /--format must be csv or parquet/ },
      { name: 'bad --concurrency', args: [...base, '--concurrency', '0'], code: 2, line: /--concurrency must be an integer from 1 to 64/ },
      { name: 'bad --page-size', args: [...base, '--page-size', '5000'], code: 2, line: /--page-size must be an integer from 1 to 1000/ },
      { name: 'bad --path-prefix', args: [...base, '--path-prefix', 'engineering'], code: 2, line: /--path-prefix must start with \// },
      { name: 'bad --status', args: [...base, '--status', 'Deleted'], code: 2, line: /--status must be Active, Inactive or Expired/ },
      { name: 'bad --endpoint-url', args: ['--out', out, '--endpoint-url', 'localhost:4566'], code: 2, line: /--endpoint-url must be an http:\/\/ or https:\/\/ URL/ },
      { name: 'bad --max-items', args: [...base, '--max-items', '-3'], code: 2, line: /--max-items must be an integer of at least 1/ },
      { name: 'bad --time-budget', args: [...base, '--time-budget', 'soon'], code: 2, line: /--time-budget must be a duration/ },
      { name: 'bad --max-attempts', args: [...base, '--max-attempts', '1000'], code: 2, line: /--max-attempts must be an integer from 1 to 100/ },
      { name: 'unknown flag', args: [...base, '--formt', 'csv'], code: 2, line: /unknown option --formt \(did you mean --format\?\)/ },
      { name: 'unwritable --out', args: ['--endpoint-url', fake.url, '--out', join(tmp, 'a-file', 'export')], code: 1, line: /--out .*a-file.*a-file is a file, not a folder$/ },
      {
        name: 'corrupt checkpoint',
        args: [...base, '--format', 'csv'],
        code: 1,
        line: /checkpoint .*checkpoint\.json is corrupt.*--fresh/,
        before: async () => {
          assert.equal((await runCli([...base, '--format', 'csv', '--max-items', '2'])).code, 75);
          const [id] = await readdir(join(out, '_staging'));
          await writeFile(join(out, '_staging', id!, 'checkpoint.json'), '\u0000\u0000garbage');
        },
        after: async () => assert.equal((await runCli([...base, '--format', 'csv', '--fresh', '--max-items', '2'])).code, 75),
      },
      { name: 'configuration mismatch', args: [...base, '--format', 'parquet'], code: 2, line: /other options \(--format csv, now parquet\).*--fresh/ },
      {
        name: 'nothing listening at --endpoint-url',
        args: ['--out', out, '--endpoint-url', `http://127.0.0.1:${deadPort}`, '--max-attempts', '2', '--fresh'],
        code: 1,
        line: new RegExp(`endpoint http://127\\.0\\.0\\.1:${deadPort} unreachable after retries \\(ECONNREFUSED\\)`),
      },
    ];
    assert.equal(cases.length, 14);
    const check = async (c: (typeof cases)[number]) => {
      const r = await runCli(c.args);
      assert.equal(r.code, c.code, `${c.name}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${c.name}: one line, got ${r.stderr}`);
      assert.match(lines[0]!, c.line, c.name);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `${c.name}: no stack trace`);
    };
    // Usage errors are refused before anything is read or written: they run side by side.
    const usage = cases.filter((c) => c.code === 2 && !c.before && c.name !== 'configuration mismatch');
    await Promise.all(usage.map(check));
    assert.equal(await treeDigest(published), digest, 'usage errors: published snapshots untouched');
    // The others touch --out (a staged snapshot, a checkpoint): one after the other, in order.
    for (const c of cases.filter((x) => !usage.includes(x))) {
      await c.before?.();
      await check(c);
      assert.equal(await treeDigest(published), digest, `${c.name}: published snapshots untouched`);
      await c.after?.();
    }
  } finally {
    await fake.close();
    await rm(tmp, { recursive: true, force: true });
  }
});

test('--debug shows the stack trace of a fatal error', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'ike-bad-'));
  try {
    await writeFile(join(tmp, 'a-file'), '');
    const r = await runCli(['--endpoint-url', 'http://127.0.0.1:9', '--out', join(tmp, 'a-file', 'x'), '--debug']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\n\s+at /);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
