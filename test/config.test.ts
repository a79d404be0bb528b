import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULTS, parseCommand, parseDuration, type Config } from '../pipeline/config.ts';
import { ExportError } from '../pipeline/errors.ts';

function config(argv: string[], env: NodeJS.ProcessEnv = {}): Config {
  const c = parseCommand(argv, env);
  assert.equal(c.kind, 'run');
  return (c as { config: Config }).config;
}

function problems(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseCommand(argv, env);
  } catch (err) {
    assert.ok(err instanceof ExportError);
    assert.equal(err.code, 'CONFIG_INVALID');
    return err.message.split('\n');
  }
  assert.fail(`expected ${argv.join(' ')} to be rejected`);
}

test('defaults follow the documented contract', () => {
  const c = config([]);
  assert.equal(c.format, 'parquet');
  assert.equal(c.out, './export');
  assert.equal(c.concurrency, 8);
  assert.equal(c.pageSize, 100);
  assert.equal(c.pathPrefix, '/');
  assert.deepEqual(c.statuses, []);
  assert.equal(c.maxAttempts, DEFAULTS.maxAttempts);
  assert.equal(c.fresh, false);
});

test('--status is repeatable, comma-separated, case-insensitive and canonical', () => {
  assert.deepEqual(config(['--status', 'expired', '--status', 'Active,inactive']).statuses, ['Active', 'Inactive', 'Expired']);
});

test('durations take ms, s, m, h and d, alone or combined', () => {
  assert.equal(parseDuration('2d'), 172_800_000);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('14m'), 840_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('250ms'), 250);
  for (const bad of ['', '10', 'm', '1x', '1h 30m', '-5s']) assert.equal(parseDuration(bad), undefined, bad);
});

test('--time-budget and --max-snapshot-age take at most 7d (a longer timer would fire at once)', () => {
  assert.equal(config(['--time-budget', '7d']).timeBudgetMs, 7 * 86_400_000);
  assert.equal(config([]).maxSnapshotAgeMs, 24 * 3_600_000);
  assert.equal(config(['--max-snapshot-age', '36h']).maxSnapshotAgeMs, 36 * 3_600_000);
  for (const flag of ['--time-budget', '--max-snapshot-age']) {
    const [line] = problems([flag, '25d']);
    assert.match(line!, new RegExp(`^${flag} must be a duration from 1s to 7d`));
  }
});

test('enum values are case-insensitive: --format CSV is csv, --log-level WARN is warn', () => {
  assert.equal(config(['--format', 'CSV']).format, 'csv');
  assert.equal(config(['--log-level', 'WARN']).logLevel, 'warn');
});

// Each bad value: the flag it must name.
const BAD: [string[], string][] = [
  [['--format', 'json'], '--format'],
  [['--out', ''], '--out'],
  [['--concurrency', '0'], '--concurrency'],
  [['--concurrency', '65'], '--concurrency'],
  [['--concurrency', 'many'], '--concurrency'],
  [['--page-size', '1001'], '--page-size'],
  [['--page-size', '2.5'], '--page-size'],
  [['--path-prefix', 'eng/'], '--path-prefix'],
  [['--path-prefix', '/a b/'], '--path-prefix'],
  [['--status', 'Revoked'], '--status'],
  [['--endpoint-url', 'ftp://x'], '--endpoint-url'],
  [['--endpoint-url', 'not a url'], '--endpoint-url'],
  [['--region', 'mars'], '--region'],
  [['--profile', ''], '--profile'],
  [['--max-items', '0'], '--max-items'],
  [['--time-budget', '5 minutes'], '--time-budget'],
  [['--max-attempts', '0'], '--max-attempts'],
  [['--log-level', 'loud'], '--log-level'],
  [['--bogus'], '--bogus'],
  [['--format'], '--format'],
  [['--fresh=yes'], '--fresh'],
  [['stray'], 'stray'],
];

for (const [argv, flag] of BAD) {
  test(`${argv.join(' ') || '(empty)'} is rejected with a line naming ${flag}`, () => {
    const lines = problems(argv);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.ok(lines[0]!.includes(flag), lines[0]);
  });
}

test('every problem is reported at once, one line each', () => {
  const lines = problems(['--format', 'xml', '--concurrency', '0', '--nope']);
  assert.equal(lines.length, 3);
});

test('tuning variables are validated like flags', () => {
  assert.match(problems([], { IKE_COMMIT_ROWS: '0' })[0]!, /IKE_COMMIT_ROWS/);
  assert.match(problems([], { IKE_COMMIT_USERS: '0' })[0]!, /IKE_COMMIT_USERS must be an integer of at least 1/);
  assert.equal(config([]).tuning.commitUsers, 4000);
  const tuning = config([], { IKE_COMMIT_MS: '0', IKE_ROWS_PER_FILE: '10', IKE_COMMIT_USERS: '50' }).tuning;
  assert.equal(tuning.rowsPerFile, 10);
  assert.equal(tuning.commitUsers, 50);
  assert.equal(tuning.commitMs, Number.POSITIVE_INFINITY, 'IKE_COMMIT_MS=0 commits only at the end');
});

test('an s3:// --out is parsed with its S3 flags; the flags are normalized', () => {
  const c = config(['--out', 's3://exports/iam/keys/', '--sse', 'AWS:KMS', '--sse-kms-key-id', 'alias/inventory', '--s3-endpoint-url', 'http://127.0.0.1:9000', '--s3-force-path-style']);
  assert.equal(c.out, 's3://exports/iam/keys/');
  assert.deepEqual(c.s3, { endpointUrl: 'http://127.0.0.1:9000', forcePathStyle: true, sse: 'aws:kms', kmsKeyId: 'alias/inventory' });
  assert.deepEqual(config(['--out', 's3://exports', '--sse', 'aes256']).s3, { endpointUrl: undefined, forcePathStyle: false, sse: 'AES256', kmsKeyId: undefined });
  assert.deepEqual(config([]).s3, { endpointUrl: undefined, forcePathStyle: false, sse: undefined, kmsKeyId: undefined });
});

test('a malformed s3:// --out and misused S3 flags are all reported at once, each naming its flag', () => {
  assert.deepEqual(problems(['--out', 's3://', '--sse', 'kms', '--s3-endpoint-url', 'minio:9000']), [
    '--out s3:// names no bucket (use s3://bucket/prefix)',
    '--s3-endpoint-url must be an http:// or https:// URL, got "minio:9000"',
    '--sse must be AES256 or aws:kms, got "kms"',
  ]);
  assert.match(problems(['--out', 's3:///x'])[0]!, /names no bucket/);
  assert.match(problems(['--out', 's3://Exports_2026/x'])[0]!, /bucket name "Exports_2026" is not valid/);
  assert.match(problems(['--out', 's3://192.168.1.2/x'])[0]!, /shaped like an IP address/);
  assert.match(problems(['--out', 's3:/exports'])[0]!, /is not an S3 URL of the form s3:\/\/bucket\/prefix/);
  assert.match(problems(['--out', 's3://exports/a//b'])[0]!, /empty path segment/);
  assert.match(problems(['--out', 's3://exports/x?versionId=1'])[0]!, /no query or fragment/);
  assert.deepEqual(problems(['--out', 's3://exports', '--sse', 'AES256', '--sse-kms-key-id', 'k']), ['--sse-kms-key-id needs --sse aws:kms']);
  assert.deepEqual(problems(['--out', 'export', '--sse', 'AES256', '--s3-force-path-style']), ['--s3-force-path-style, --sse apply only to an S3 --out (s3://bucket/prefix), got --out export']);
});
