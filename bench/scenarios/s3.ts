/**
 * Measure 8 (S3 output): the same export of ~20,000 keys (fake with 20,000 users,
 * no latency, Parquet, c=16) to a local folder and to s3:// on moto_server, each
 * run in its own process (bench/s3/worker.ts), alternated so a drift of the
 * machine's speed touches both sides; the wall ratio is S3 / local, medians.
 *
 * S3 requests are counted by a middleware on the store's client. Per commit: the
 * calls between the first and the last commit, divided by the commits between
 * them (a part, the checkpoint, and the lease renewals of that stretch). Per
 * snapshot: every call, at the default commit cadence and at IKE_COMMIT_ROWS=500
 * (many more parts): the growth per extra part is the slope, and the total stays
 * far below the number of keys: O(parts), not O(keys).
 *
 * moto_server answers a request in ~15 ms here (its per-request overhead, not
 * the network): real S3 is within the same order, so the ratio is a fair guide.
 */
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3WorkerResult } from '../s3/worker.ts';
import { exporterEnv } from '../exporter.ts';
import { withFake, type FakeProcess } from '../fake.ts';
import { startMotoS3 } from '../moto.ts';
import { expectSuccess, runNode } from '../proc.ts';
import { median, mib, runsLabel, seconds, type Row, type ScenarioContext, type ScenarioResult } from '../results.ts';

const WORKER = fileURLToPath(new URL('../s3/worker.ts', import.meta.url));
const USERS = 20_000;
const REPEATS = 2;
const BUCKET = 'ike-bench';
const TARGET_RATIO = 1.5;
/** A commit writes one part and saves the checkpoint; a lease renewal every 5 s adds a little. */
const TARGET_PER_COMMIT = 3;
const MANY_PARTS = { IKE_COMMIT_ROWS: '500' };

interface Measured extends S3WorkerResult {
  readonly processMs: number;
  readonly s3Calls: number;
}

const total = (calls: Readonly<Record<string, number>>) => Object.values(calls).reduce((a, b) => a + b, 0);

let runs = 0;

async function once(ctx: ScenarioContext, fake: FakeProcess, motoUrl: string, where: 'local' | 's3', env: Readonly<Record<string, string>> = {}): Promise<Measured> {
  const out = where === 'local' ? await mkdtemp(join(ctx.workDir, 's3-local-')) : `s3://${BUCKET}/run-${++runs}`;
  const r = expectSuccess(`worker ${where}`, await runNode(['--import', 'tsx', WORKER, fake.url, out], exporterEnv({ AWS_ENDPOINT_URL_S3: motoUrl, ...env }), 600_000));
  const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as S3WorkerResult;
  const s3Calls = total(result.calls);
  const extra = Object.keys(env).length ? ` (${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')})` : '';
  ctx.log(`  ${where}${extra}: ${seconds(result.ms)}, ${result.rows} rows, ${result.commits} commits (${result.parts} parts)${where === 's3' ? `, ${s3Calls} S3 calls ${JSON.stringify(result.calls)}` : ''}, peak RSS ${mib(result.maxRssKb)}`);
  return { ...result, processMs: r.processMs, s3Calls };
}

/** Calls per commit in the steady state: between the first and the last commit. */
function perCommit(r: S3WorkerResult): number | undefined {
  const c = r.callsAtCommit;
  return c.length >= 2 ? (c[c.length - 1]! - c[0]!) / (c.length - 1) : undefined;
}

/** Runs measure 7. */
export async function s3Scenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const moto = await startMotoS3(BUCKET);
  try {
    return await withFake({ users: USERS, seed: 1 }, async (fake) => {
      ctx.log(`s3: fake with ${USERS} users, no latency; moto_server at ${moto.url}`);
      const local: Measured[] = [];
      const s3: Measured[] = [];
      for (let i = 0; i < REPEATS; i++) {
        local.push(await once(ctx, fake, moto.url, 'local'));
        s3.push(await once(ctx, fake, moto.url, 's3'));
      }
      const many = await once(ctx, fake, moto.url, 's3', MANY_PARTS);
      const localMs = median(local.map((r) => r.ms));
      const s3Ms = median(s3.map((r) => r.ms));
      const ratio = s3Ms / localMs;
      const base = s3[0]!;
      const commitCosts = [...s3, many].map(perCommit).filter((x): x is number => x !== undefined);
      const commitCost = commitCosts.length ? Math.max(...commitCosts) : Number.NaN;
      const slope = many.parts > base.parts ? (many.s3Calls - base.s3Calls) / (many.parts - base.parts) : Number.NaN;
      const rows: Row[] = [
        {
          section: '8',
          measure: `${base.rows.toLocaleString('en-US')} keys, parquet c=16: s3:// on moto_server / local disk, wall ratio`,
          value: `${ratio.toFixed(2)} (${seconds(s3Ms)} vs ${seconds(localMs)}; process ${seconds(median(s3.map((r) => r.processMs)))} vs ${seconds(median(local.map((r) => r.processMs)))})`,
          target: `≤ ${TARGET_RATIO}`,
          met: ratio <= TARGET_RATIO,
          runs: `${runsLabel(REPEATS)} each, alternated`,
        },
        {
          section: '8',
          measure: 'S3 requests per commit (a part PUT, the checkpoint PUT, lease renewals)',
          value: Number.isNaN(commitCost) ? 'n/a (fewer than 2 commits)' : `${commitCost.toFixed(2)} at most (${commitCosts.map((c) => c.toFixed(2)).join(', ')})`,
          target: `≤ ${TARGET_PER_COMMIT}`,
          met: Number.isNaN(commitCost) ? null : commitCost <= TARGET_PER_COMMIT,
          runs: `${commitCosts.length} runs`,
        },
        {
          section: '8',
          measure: 'S3 requests per snapshot: default cadence / IKE_COMMIT_ROWS=500',
          value: `${base.s3Calls} for ${base.parts} parts / ${many.s3Calls} for ${many.parts} parts: ${slope.toFixed(1)} more per extra part, for ${base.rows.toLocaleString('en-US')} keys (${JSON.stringify(many.calls)})`,
          target: 'O(parts), not O(keys)',
          met: !Number.isNaN(slope) && slope <= 2 * TARGET_PER_COMMIT && many.s3Calls < base.rows / 10,
          runs: '1 run each',
        },
      ];
      return { rows, data: { users: USERS, local, s3, manyParts: many, ratio, commitCost, slope } };
    });
  } finally {
    await moto.stop();
  }
}
