import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { runCli } from './support/cli.ts';
import { OPTIONS } from '../pipeline/config.ts';

test('--help documents every flag', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0);
  for (const name of Object.keys(OPTIONS)) assert.ok(r.stdout.includes(`--${name}`), `--help mentions --${name}`);
});

test('--version prints the package version', async () => {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = await runCli(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), `iam-key-export ${pkg.version}`);
});

for (const [argv, flag] of [
  [['--no-such-flag'], '--no-such-flag'],
  [['--concurrency', '65'], '--concurrency'],
] as const) {
  test(`${argv.join(' ')} exits 2 with one line naming ${flag} and no stack trace`, async () => {
    const r = await runCli([...argv, '--out', '/nonexistent/never-created']);
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0]!.includes(flag));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
}

test('the command starts with V8\'s heap growth capped at 40 % unless the operator set it on node\'s command line or in NODE_OPTIONS', async () => {
  const module = '../bin/heap-flag.js';
  const { heapFlag } = (await import(module)) as { heapFlag: (execArgv: string[], nodeOptions: string | undefined) => string | null };
  assert.equal(heapFlag([], undefined), '--heap-growing-percent=40');
  assert.equal(heapFlag(['--enable-source-maps'], '--max-old-space-size=200'), '--heap-growing-percent=40', 'a heap limit is another setting');
  assert.equal(heapFlag(['--heap-growing-percent=0'], undefined), null, 'V8\'s heuristics, asked for');
  assert.equal(heapFlag([], '--enable-source-maps  --heap_growing_percent=10'), null, 'the underscore spelling, in NODE_OPTIONS');
  assert.equal(heapFlag([], '--heap-growing-percentage=10'), '--heap-growing-percent=40', 'not a flag of that name');
});
