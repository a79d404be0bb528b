import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { runCli, testEnv } from './support/cli.ts';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
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

test('the command caps V8\'s heap growth at 40 % unless IKE_HEAP_GROWING_PERCENT or node\'s command line says otherwise; a bad value is one line, exit 2', async () => {
  const module = '../bin/heap-flag.js';
  const { heapGrowingPercent } = (await import(module)) as HeapFlagModule;
  assert.equal(heapGrowingPercent([], {}), 40);
  assert.equal(heapGrowingPercent(['--max-old-space-size=200'], { IKE_HEAP_GROWING_PERCENT: '' }), 40, 'a heap limit is another setting');
  assert.equal(heapGrowingPercent([], { IKE_HEAP_GROWING_PERCENT: '100' }), 100);
  assert.equal(heapGrowingPercent([], { IKE_HEAP_GROWING_PERCENT: '0' }), null, 'V8\'s heuristics, asked for');
  assert.equal(heapGrowingPercent(['--heap_growing_percent=10'], { IKE_HEAP_GROWING_PERCENT: '100' }), null, 'node\'s command line wins, in V8\'s underscore spelling too');
  assert.equal(heapGrowingPercent(['--heap-growing-percentage=10'], {}), 40, 'not a flag of that name');
  assert.equal(heapGrowingPercent([], { IKE_HEAP_GROWING_PERCENT: '4O' }), null);
  const bad = await runCli(['--endpoint-url', 'http://127.0.0.1:9', '--out', '/nonexistent'], testEnv({ IKE_HEAP_GROWING_PERCENT: '4O' }));
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^iam-key-export: .*IKE_HEAP_GROWING_PERCENT must be an integer of at least 0, got "4O"/);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
});

interface GcEntry {
  readonly detail?: { readonly kind: number };
}
interface HeapFlagModule {
  HEAP_FLOOR_BYTES: number;
  heapGrowingPercent: (execArgv: string[], env: Record<string, string | undefined>) => number | null;
  oldGenerationBytes: (spaces?: ReturnType<typeof getHeapSpaceStatistics>) => number;
  growingPercent: (percent: number, liveBytes: number, floorBytes?: number) => number;
  heapGrowthCap: (percent: number, deps?: CapDeps) => HeapGrowthCap;
  capHeapGrowth: (percent: number, deps?: CapDeps) => HeapGrowthCap;
}
interface CapDeps {
  readonly set?: (flag: string) => void;
  readonly oldBytes?: () => number;
  readonly floorBytes?: number;
}
interface HeapGrowthCap {
  afterCollections(entries: readonly GcEntry[]): void;
  readonly percent: number | undefined;
}
const heapFlagModule = '../bin/heap-flag.js';

test('the growth allowed past what is live is the cap, or what reaches the floor when that is more', async () => {
  const { growingPercent, HEAP_FLOOR_BYTES } = (await import(heapFlagModule)) as HeapFlagModule;
  const MiB = 2 ** 20;
  assert.equal(HEAP_FLOOR_BYTES, 24 * MiB);
  assert.equal(growingPercent(40, 12 * MiB), 100, '12 MiB live: up to the 24 MiB floor');
  assert.equal(growingPercent(40, 20 * MiB), 40, '20 MiB live: 1.4 x 20 is past the floor');
  assert.equal(growingPercent(40, 24 * MiB), 40);
  assert.equal(growingPercent(40, 16 * MiB, 32 * MiB), 100);
  assert.equal(growingPercent(150, 12 * MiB), 150, 'the cap when it allows more');
  assert.equal(growingPercent(40, 0), 400, 'a nearly empty heap: at most 400 %');
});

test('the cap is set after full collections, not at start, for the next one, and again only when it changes', async () => {
  const { heapGrowthCap } = (await import(heapFlagModule)) as HeapFlagModule;
  const { constants } = await import('node:perf_hooks');
  const MiB = 2 ** 20;
  let live = 12 * MiB;
  const set: string[] = [];
  const cap = heapGrowthCap(40, { set: (f) => set.push(f), oldBytes: () => live });
  const minor = { detail: { kind: constants.NODE_PERFORMANCE_GC_MINOR } };
  const major = { detail: { kind: constants.NODE_PERFORMANCE_GC_MAJOR } };
  const marking = { detail: { kind: constants.NODE_PERFORMANCE_GC_INCREMENTAL } };
  assert.equal(cap.percent, undefined, 'nothing set before a full collection');
  cap.afterCollections([minor, marking, minor]);
  assert.deepEqual(set, [], 'young-generation collections and marking steps set nothing');
  cap.afterCollections([minor, major]);
  assert.deepEqual(set, ['--heap-growing-percent=100']);
  cap.afterCollections([major]);
  assert.deepEqual(set, ['--heap-growing-percent=100'], 'unchanged: not set again');
  live = 30 * MiB;
  cap.afterCollections([major]);
  assert.deepEqual(set, ['--heap-growing-percent=100', '--heap-growing-percent=40']);
  assert.equal(cap.percent, 40);
});

test('a real full collection is seen by the command\'s observer, which sets the growth from what V8 holds', async () => {
  const { capHeapGrowth, oldGenerationBytes } = (await import(heapFlagModule)) as HeapFlagModule;
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  const set: string[] = [];
  let read = 0;
  const cap = capHeapGrowth(40, { set: (f) => set.push(f), oldBytes: () => (read = oldGenerationBytes()) });
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  // Node reports collections to observers on a later turn of the event loop.
  for (let turn = 0; turn < 100 && cap.percent === undefined; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(read > 0, 'read the old generation');
  assert.equal(set.length, 1);
  assert.equal(set[0], `--heap-growing-percent=${cap.percent}`);
});

test('the old generation is read from V8: every space but the young generation\'s', async () => {
  const { oldGenerationBytes } = (await import(heapFlagModule)) as HeapFlagModule;
  const bytes = oldGenerationBytes();
  assert.ok(bytes > 0 && bytes < getHeapStatistics().used_heap_size, `${bytes}`);
  const spaces = [
    { space_name: 'new_space', space_used_size: 5 },
    { space_name: 'old_space', space_used_size: 7 },
    { space_name: 'new_large_object_space', space_used_size: 11 },
    { space_name: 'code_space', space_used_size: 13 },
    { space_name: 'large_object_space', space_used_size: 17 },
  ] as ReturnType<typeof getHeapSpaceStatistics>;
  assert.equal(oldGenerationBytes(spaces), 7 + 13 + 17);
});
