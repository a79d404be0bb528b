import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { runCli, testEnv } from './support/cli.ts';
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

test('the command starts with V8\'s heap growth capped at 40 % unless IKE_HEAP_GROWING_PERCENT or node\'s command line says otherwise; a bad value is one line, exit 2', async () => {
  const module = '../bin/heap-flag.js';
  const { heapFlag } = (await import(module)) as { heapFlag: (execArgv: string[], env: Record<string, string | undefined>) => string | null };
  assert.equal(heapFlag([], {}), '--heap-growing-percent=40');
  assert.equal(heapFlag(['--max-old-space-size=200'], { IKE_HEAP_GROWING_PERCENT: '' }), '--heap-growing-percent=40', 'a heap limit is another setting');
  assert.equal(heapFlag([], { IKE_HEAP_GROWING_PERCENT: '100' }), '--heap-growing-percent=100');
  assert.equal(heapFlag([], { IKE_HEAP_GROWING_PERCENT: '0' }), null, 'V8\'s heuristics, asked for');
  assert.equal(heapFlag(['--heap_growing_percent=10'], { IKE_HEAP_GROWING_PERCENT: '100' }), null, 'node\'s command line wins, in V8\'s underscore spelling too');
  assert.equal(heapFlag(['--heap-growing-percentage=10'], {}), '--heap-growing-percent=40', 'not a flag of that name');
  assert.equal(heapFlag([], { IKE_HEAP_GROWING_PERCENT: '4O' }), null);
  const bad = await runCli(['--endpoint-url', 'http://127.0.0.1:9', '--out', '/nonexistent'], testEnv({ IKE_HEAP_GROWING_PERCENT: '4O' }));
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^iam-key-export: .*IKE_HEAP_GROWING_PERCENT must be an integer of at least 0, got "4O"/);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
});
