/**
 * One export for the S3 scenario, in its own process: the real `runExport` (as the
 * CLI runs it) against the fake IAM, into a local folder or an s3:// root, with a
 * counting middleware on the S3 client (pipeline/source/client.ts `instrument`).
 *
 *   node --import tsx bench/s3/worker.ts <iam endpoint> <out>
 *
 * AWS_ENDPOINT_URL_S3 points the store at moto_server. Prints one JSON line
 * (`S3WorkerResult`); timing starts after the imports and the store is opened.
 */
import { parseCommand } from '../../pipeline/config.ts';
import { runExport } from '../../pipeline/run.ts';
import { newApiStats, totalCalls } from '../../pipeline/source/client.ts';
import { openStore } from '../../pipeline/store/index.ts';

/** What the worker reports. */
export interface S3WorkerResult {
  readonly ms: number;
  readonly rows: number;
  /** Durable commits, and those that wrote a part (the rest only moved the checkpoint). */
  readonly commits: number;
  readonly parts: number;
  /** S3 calls per operation over the whole snapshot (empty for a local --out). */
  readonly calls: Readonly<Record<string, number>>;
  readonly attempts: number;
  /** Total S3 calls when each commit was durable. */
  readonly callsAtCommit: readonly number[];
  readonly maxRssKb: number;
}

const [endpoint, out] = process.argv.slice(2);
if (!endpoint || !out) {
  process.stderr.write('usage: worker.ts <iam endpoint> <out>\n');
  process.exit(2);
}
const command = parseCommand(['--endpoint-url', endpoint, '--out', out, '--format', 'parquet', '--concurrency', '16', '--quiet'], process.env);
if (command.kind !== 'run') throw new Error('unexpected command');
const config = command.config;
const stats = newApiStats();
const store = await openStore(config.out, { s3: config.s3, region: config.region, maxAttempts: config.maxAttempts, stats });
let commits = 0;
let parts = 0;
let keys = 0;
const callsAtCommit: number[] = [];
const t0 = performance.now();
const outcome = await runExport(config, {
  toolVersion: 'bench',
  store,
  observer: {
    onCommit(progress) {
      commits++;
      if (progress.keys > keys) parts++;
      keys = progress.keys;
      callsAtCommit.push(totalCalls(stats));
    },
  },
});
const ms = performance.now() - t0;
store.close?.();
if (outcome.status !== 'published') throw new Error(`the export ended ${outcome.status}`);
const result: S3WorkerResult = { ms, rows: outcome.result.rows, commits, parts, calls: stats.calls, attempts: stats.attempts, callsAtCommit, maxRssKb: process.resourceUsage().maxRSS };
process.stdout.write(JSON.stringify(result) + '\n');
