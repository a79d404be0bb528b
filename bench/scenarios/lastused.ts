/**
 * Measure 10 (last use, issue 11): 5,000 keys (2,500 users × 2 keys) under a
 * 25 req/s IAM limit, exported with --last-used off, report and api.
 *
 * - report's extra calls over off: GenerateCredentialReport + GetCredentialReport
 *   (a few while the report is generated), plus one GetAccessKeyLastUsed per key the
 *   report cannot attribute (the manifest's from_api);
 * - wall time ratio report / off;
 * - api's share of the allowed rate: successful answers / (rate × wall s + burst),
 *   as in measure 3 (it makes 2,500 + 5,000 calls).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { runExporter, type ExportRun } from '../exporter.ts';
import { withFake, type FakeProcess } from '../fake.ts';
import { seconds, type Row, type ScenarioContext, type ScenarioResult } from '../results.ts';

const USERS = 2_500;
const RATE = 25;
const BURST = 25;
const CONCURRENCY = 16;
const MODES = ['off', 'report', 'api'] as const;

interface ModeRun {
  readonly mode: (typeof MODES)[number];
  readonly run: Omit<ExportRun, 'dataFiles'>;
  readonly successful: number;
  readonly throttled: number;
  readonly share: number;
}

async function modeRun(fake: FakeProcess, ctx: ScenarioContext, mode: (typeof MODES)[number]): Promise<ModeRun> {
  await sleep((BURST / RATE) * 1000 + 200); // a full bucket at the start
  await fake.resetStats();
  const { dataFiles: _files, ...run } = await runExporter({ command: ctx.command, url: fake.url, concurrency: CONCURRENCY, format: 'parquet', workDir: ctx.workDir, args: ['--last-used', mode], timeoutMs: 900_000 });
  const stats = await fake.stats();
  const errors = Object.values(stats.errors).reduce((a, b) => a + b, 0);
  const successful = stats.totalCalls - errors;
  const share = successful / (RATE * (run.wallMs / 1000) + BURST);
  ctx.log(`  --last-used ${mode}: ${seconds(run.wallMs)}, ${run.callsTotal} calls, ${stats.throttled} throttled, share ${share.toFixed(2)}, report ${run.lastUsed.fromReport} / api ${run.lastUsed.fromApi} keys`);
  return { mode, run, successful, throttled: stats.throttled, share };
}

/** Runs measure 10. */
export async function lastUsedScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  return withFake({ users: USERS, seed: 8, 'keys-min': 2, 'keys-max': 2, rate: RATE, burst: BURST }, async (fake) => {
    ctx.log(`last use: fake with ${USERS} users × 2 keys, ${RATE}/s burst ${BURST}, c=${CONCURRENCY}`);
    const runs: ModeRun[] = [];
    for (const mode of MODES) runs.push(await modeRun(fake, ctx, mode));
    const [off, report, api] = runs as [ModeRun, ModeRun, ModeRun];
    const extra = report.run.callsTotal - off.run.callsTotal;
    const allowedExtra = 5 + report.run.lastUsed.fromApi;
    const wallRatio = report.run.wallMs / off.run.wallMs;
    const calls = (r: ModeRun) => Object.entries(r.run.calls).map(([op, n]) => `${op} ${n}`).join(', ');
    const rows: Row[] = [
      ...runs.map((r): Row => ({
        section: '10',
        measure: `last use, ${r.run.rows.toLocaleString('en-US')} keys @ ${RATE} req/s, c=${CONCURRENCY}: --last-used ${r.mode}`,
        value: `${seconds(r.run.wallMs)}, ${r.run.callsTotal} calls (${calls(r)}), ${r.throttled} throttled answers`,
        target: '—',
        met: null,
        runs: '1 run',
      })),
      {
        section: '10',
        measure: 'last use: calls of report minus off (allowed: 5 + one per key the report cannot attribute)',
        value: `${extra} (${report.run.lastUsed.fromReport} keys from the report, ${report.run.lastUsed.fromApi} from the API)`,
        target: `≤ ${allowedExtra}`,
        met: extra <= allowedExtra,
        runs: '1 run each',
      },
      {
        section: '10',
        measure: 'last use: wall time report / off',
        value: `${wallRatio.toFixed(3)} (${seconds(report.run.wallMs)} vs ${seconds(off.run.wallMs)})`,
        target: '≤ 1.10',
        met: wallRatio <= 1.1,
        runs: '1 run each',
      },
      {
        section: '10',
        measure: 'last use: --last-used api, share of the allowed rate used',
        value: `${api.share.toFixed(2)} (${api.successful} answers ok in ${seconds(api.run.wallMs)})`,
        target: '≥ 0.90',
        met: api.share >= 0.9,
        runs: '1 run',
      },
    ];
    return { rows, data: { users: USERS, keysPerUser: 2, rate: RATE, burst: BURST, concurrency: CONCURRENCY, runs } };
  });
}
