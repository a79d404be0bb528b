/**
 * Measure 3: a run under a server-side rate limit. Fake: 500 users, a token
 * bucket of 25 requests/s with a burst of 25, 10 ms latency; ours at c=16.
 *
 * Share of the allowed rate used = successful API answers / (25 × wall seconds +
 * 25): the most a client could have been granted in the run's wall time (the
 * bucket starts full). The wall time is the exporter's own (manifest), which also
 * holds the snapshot set-up and the publish, so the share is slightly understated.
 * Exactness: every run's published rows against the fake's truth, key id by key id.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readCsvColumn } from '../csv.ts';
import { runExporter, type ExportRun } from '../exporter.ts';
import { withFake, type FakeProcess, type FakeStats } from '../fake.ts';
import { median, runsLabel, seconds, type Row, type ScenarioContext, type ScenarioResult } from '../results.ts';

const USERS = 500;
const RATE = 25;
const BURST = 25;
const LATENCY_MS = 10;
const CONCURRENCY = 16;
/** Each run takes ~20-30 s; the share varies from run to run (random backoff). */
const RUNS = 2;

interface RateRun {
  readonly run: Omit<ExportRun, 'dataFiles'>;
  readonly fake: FakeStats;
  readonly successful: number;
  readonly allowed: number;
  readonly share: number;
  readonly expectedRows: number;
  readonly rows: number;
  readonly missing: number;
  readonly extra: number;
  readonly exact: boolean;
}

async function rateRun(fake: FakeProcess, ctx: ScenarioContext, expected: readonly string[]): Promise<RateRun> {
  // A full bucket at the start, whatever the previous run left.
  await sleep((BURST / RATE) * 1000 + 200);
  await fake.resetStats();
  const { dataFiles, ...run } = await runExporter({ command: ctx.command, url: fake.url, concurrency: CONCURRENCY, format: 'csv', workDir: ctx.workDir });
  const stats = await fake.stats();
  const errors = Object.values(stats.errors).reduce((a, b) => a + b, 0);
  const successful = stats.totalCalls - errors;
  const allowed = RATE * (run.wallMs / 1000) + BURST;
  const share = successful / allowed;

  const got = await readCsvColumn(dataFiles, 'access_key_id');
  const gotSet = new Set(got);
  const expectedSet = new Set(expected);
  const missing = expected.filter((id) => !gotSet.has(id)).length;
  const extra = got.length - gotSet.size + [...gotSet].filter((id) => !expectedSet.has(id)).length;
  const exact = got.length === expected.length && missing === 0 && extra === 0;
  ctx.log(`  ${seconds(run.wallMs)}: ${successful} answers ok, ${stats.throttled} throttled, share ${share.toFixed(2)}, exact: ${exact}`);
  return { run, fake: stats, successful, allowed, share, expectedRows: expected.length, rows: got.length, missing, extra, exact };
}

/** Runs measure 3. */
export async function rateLimitScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  return withFake({ users: USERS, seed: 1, 'latency-ms': LATENCY_MS, rate: RATE, burst: BURST }, async (fake) => {
    ctx.log(`rate limit: fake with ${USERS} users, ${RATE}/s burst ${BURST}, ${LATENCY_MS} ms latency`);
    const expected = await fake.readableKeyIds();
    const runs: RateRun[] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await rateRun(fake, ctx, expected));

    const each = (f: (r: RateRun) => string) => runs.map(f).join(', ');
    const attempts = (r: RateRun) => r.fake.totalCalls;
    const rows: Row[] = [
      {
        section: '3',
        measure: `rate limit ${RATE}/s burst ${BURST}, c=${CONCURRENCY}: share of allowed rate used`,
        value: `${median(runs.map((r) => r.share)).toFixed(2)} (runs: ${each((r) => `${r.share.toFixed(2)} = ${r.successful} ok in ${seconds(r.run.wallMs)}`)})`,
        target: '—',
        met: null,
        runs: runsLabel(runs.length),
      },
      {
        section: '3',
        measure: 'rate limit: throttled answers / retries',
        value: `throttled ${each((r) => `${r.fake.throttled} of ${attempts(r)} (${((100 * r.fake.throttled) / attempts(r)).toFixed(0)} %)`)}; retries ${each((r) => String(r.run.retries))}; ${runs[0]!.run.callsTotal} logical calls`,
        target: '—',
        met: null,
        runs: `${runs.length} runs`,
      },
      {
        section: '3',
        measure: 'rate limit: output exact (rows and key ids = fake truth)',
        value: each((r) => `${r.rows} rows vs ${r.expectedRows} keys, ${r.missing} missing, ${r.extra} extra`),
        target: 'exact',
        met: runs.every((r) => r.exact),
        runs: `${runs.length} runs`,
      },
    ];
    return { rows, data: { users: USERS, rate: RATE, burst: BURST, latencyMs: LATENCY_MS, concurrency: CONCURRENCY, definition: 'share = successful answers / (rate × manifest wall s + burst)', runs } };
  });
}
