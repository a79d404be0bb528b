/**
 * What the operator sees, by output mode: a terminal gets a start line and a live
 * bar on stderr; anything else JSON lines on stdout; --quiet only the summary. Each
 * mode loads its own library when it is chosen (start time), so each is run here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { parseCommand, type Config } from '../pipeline/config.ts';
import { createReporter } from '../pipeline/report.ts';
import { dataConfigOf, type Progress, type StartInfo } from '../pipeline/run.ts';

/** A stream that keeps what is written to it, a terminal or not. */
function sink(isTTY: boolean): NodeJS.WriteStream & { text(): string } {
  const chunks: Buffer[] = [];
  const s = new PassThrough();
  s.on('data', (c: Buffer) => chunks.push(c));
  return Object.assign(s, { isTTY, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true, text: () => Buffer.concat(chunks).toString('utf8') }) as unknown as NodeJS.WriteStream & { text(): string };
}

function configOf(args: string[]): Config {
  const parsed = parseCommand(['--out', '/tmp/reporter-test', ...args], {});
  assert.equal(parsed.kind, 'run');
  return (parsed as { config: Config }).config;
}

const PROGRESS: Progress = { listingDone: true, usersListed: 10, usersDone: 4, usersDoneThisRun: 4, keys: 7, calls: 12, throttles: 0, retries: 0, elapsedMs: 1000 };

function startInfo(config: Config): StartInfo {
  return { snapshotId: '20261129T120000Z', resumed: false, resumes: 0, phase: 'export', config: dataConfigOf(config, {}), accountId: '123456789012', endpoint: 'https://iam.amazonaws.com' };
}

for (const mode of ['tty', 'json', 'quiet'] as const) {
  test(`output mode ${mode}: its start, progress and end go where the mode says`, async () => {
    const stdout = sink(mode === 'tty');
    const stderr = sink(mode === 'tty');
    const config = configOf(mode === 'quiet' ? ['--quiet'] : []);
    const reporter = createReporter(config, { stdout, stderr, progressMs: 60_000 });
    reporter.observer.onStart!(startInfo(config), () => PROGRESS);
    reporter.end({ exitCode: 0, error: new Error('stopped for the test') });
    await new Promise((resolve) => setImmediate(resolve));
    const out = stdout.text();
    const err = stderr.text();
    if (mode === 'tty') {
      assert.match(err, /iam-key-export: new snapshot 20261129T120000Z, exporting to \/tmp\/reporter-test/);
      assert.match(err, /users .* 4\/10 \| keys 7/, 'the live bar');
      assert.equal(out, '');
    } else if (mode === 'json') {
      const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { event?: string; level: string });
      assert.equal(lines[0]!.event, 'start');
      assert.equal(lines[0]!.level, 'info');
      assert.doesNotMatch(err, /users .*\|/, 'no bar off a terminal');
    } else {
      assert.equal(out, '');
      assert.doesNotMatch(err, /new snapshot|users .*\|/);
    }
  });
}
