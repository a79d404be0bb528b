/**
 * Measure 9 (organization, issue 12): 200 accounts × 100 users, each account
 * with its own rate limit of 20 req/s (IAM throttles per account), exported with
 * --organization through AssumeRole.
 *
 * - one process, --account-concurrency 8: wall time against the ideal of accounts
 *   in parallel at that concurrency: (IAM calls per account - burst) / rate per
 *   account, times the number of rounds (accounts / concurrency);
 * - 1 vs 4 shards (processes on this machine, --shards 4, one --snapshot-id): the
 *   speed-up of the whole snapshot (start of the first to publish by the last);
 * - one account throttled hard (SLOW_RATE req/s): the answered calls per second of
 *   each other account, from its first request to its last, against the same in
 *   the run without it (IAM throttles per account: each has its own rate gate).
 * Exactness: the published key ids equal the fake's truth over every account.
 */
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withThisNode } from '../../test/support/package.ts';
import { readCsvColumn } from '../csv.ts';
import { exporterEnv } from '../exporter.ts';
import { withFake, type FakeProcess } from '../fake.ts';
import { expectSuccess, runCommand, type ChildResult } from '../proc.ts';
import { seconds, type Row, type ScenarioContext, type ScenarioResult } from '../results.ts';

const MEMBERS = 199; // plus the management account: 200
const USERS = 100;
const RATE = 20;
const BURST = 20;
const ACCOUNT_CONCURRENCY = 8;
const CONCURRENCY = 8;
const SHARDS = 4;
const SLOW_RATE = 2;

interface OrgRun {
  readonly wallMs: number;
  readonly processes: readonly ChildResult[];
  readonly rows: number;
  readonly iamCalls: number;
  readonly exact: boolean;
  /** Answered IAM calls per second of each account, from its first request to its last. */
  readonly ratePerAccount: ReadonlyMap<string, number>;
}

async function orgRun(fake: FakeProcess, ctx: ScenarioContext, expected: ReadonlySet<string>, shards: number, slow?: string): Promise<OrgRun> {
  await fake.configure({ accountRateLimits: slow === undefined ? {} : { [slow]: { perSecond: SLOW_RATE, burst: SLOW_RATE } } });
  await sleep((BURST / RATE) * 1000 + 200); // full buckets
  await fake.resetStats();
  const out = await mkdtemp(join(ctx.workDir, 'org-'));
  const env = withThisNode(exporterEnv({ AWS_ENDPOINT_URL: fake.url }));
  const base = ['--organization', '--role-name', 'OrganizationAccountAccessRole', '--out', out, '--format', 'csv', '--quiet', '--account-concurrency', String(ACCOUNT_CONCURRENCY), '--concurrency', String(CONCURRENCY)];
  const id = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const started = performance.now();
  const processes = await Promise.all(
    Array.from({ length: shards }, (_, i) =>
      runCommand(ctx.command, shards === 1 ? base : [...base, '--shards', String(shards), '--shard-index', String(i), '--snapshot-id', id], env, 1_800_000).then((r) => expectSuccess(`shard ${i}`, r)),
    ),
  );
  const wallMs = performance.now() - started;
  const dataset = join(out, 'access_keys');
  const [snapshot] = (await readdir(dataset)).filter((n) => n.startsWith('snapshot_id='));
  if (!snapshot) throw new Error('nothing published');
  const dir = join(dataset, snapshot);
  const manifest = JSON.parse(await readFile(join(dir, '_manifest.json'), 'utf8')) as { rows: number; files: { file: string }[]; api: { calls: Record<string, number> } };
  const got = await readCsvColumn(manifest.files.map((f) => join(dir, f.file)), 'access_key_id');
  const exact = got.length === expected.size && new Set(got).size === got.length && got.every((k) => expected.has(k));
  const iamCalls = Object.entries(manifest.api.calls)
    .filter(([op]) => !['AssumeRole', 'ListAccounts', 'GetCallerIdentity'].includes(op))
    .reduce((n, [, c]) => n + c, 0);
  const ratePerAccount = new Map(
    Object.entries((await fake.stats()).byAccount).map(([account, a]) => [account, (a.totalCalls - a.throttled) / Math.max(0.001, (a.lastAt - a.firstAt) / 1000)] as const),
  );
  ctx.log(`  ${shards} process(es)${slow === undefined ? '' : `, account ${slow} at ${SLOW_RATE} req/s`}: ${seconds(wallMs)}, ${got.length} rows, exact: ${exact}`);
  return { wallMs, processes, rows: got.length, iamCalls, exact, ratePerAccount };
}

/** Runs measure 9. */
export async function accountsScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  return withFake(
    { users: USERS, seed: 9, accounts: MEMBERS, 'users-per-account-min': USERS, 'users-per-account-max': USERS, 'account-rate': RATE, 'account-burst': BURST },
    async (fake) => {
      const accounts = await fake.accountIds();
      ctx.log(`organization: ${accounts.length} accounts × ${USERS} users, ${RATE} req/s per account, --account-concurrency ${ACCOUNT_CONCURRENCY}`);
      const expected = new Set<string>();
      for (const a of accounts) for (const k of await fake.readableKeyIds(a)) expected.add(k);
      const one = await orgRun(fake, ctx, expected, 1);
      const sharded = await orgRun(fake, ctx, expected, SHARDS);
      // The fake lists the management account first (its base credentials also sign
      // every AssumeRole, so its window is the whole run: left out); the slow one is
      // a member of the first round, so the others run beside it throughout.
      const [management, slow] = accounts as [string, string];
      const throttled = await orgRun(fake, ctx, expected, 1, slow);
      const others = accounts.filter((a) => a !== slow && a !== management && one.ratePerAccount.has(a) && throttled.ratePerAccount.has(a));
      const mean = (r: OrgRun) => others.reduce((n, a) => n + r.ratePerAccount.get(a)!, 0) / others.length;
      const rateRatio = mean(throttled) / mean(one);
      const perAccount = one.iamCalls / accounts.length;
      const ideal = (Math.max(0, perAccount - BURST) / RATE) * 1000 * Math.ceil(accounts.length / ACCOUNT_CONCURRENCY);
      const efficiency = ideal / one.wallMs;
      const cpu = (r: OrgRun) => r.processes.reduce((n, p) => n + (p.cpuMs ?? 0), 0);
      const rows: Row[] = [
        {
          section: '9',
          measure: `organization ${accounts.length} accounts × ${USERS} users @ ${RATE} req/s each, --account-concurrency ${ACCOUNT_CONCURRENCY}: efficiency ideal/measured`,
          value: `${efficiency.toFixed(2)} (${seconds(one.wallMs)} vs ideal ${seconds(ideal)}; ${perAccount.toFixed(0)} IAM calls per account; CPU ${seconds(cpu(one))})`,
          target: '≥ 0.85',
          met: efficiency >= 0.85,
          runs: '1 run',
        },
        {
          section: '9',
          measure: `organization: 1 process vs ${SHARDS} shards (processes on this machine, --account-concurrency ${ACCOUNT_CONCURRENCY} each)`,
          value: `speed-up ${(one.wallMs / sharded.wallMs).toFixed(2)} (${seconds(one.wallMs)} vs ${seconds(sharded.wallMs)}; CPU ${seconds(cpu(one))} vs ${seconds(cpu(sharded))} on 2 cores)`,
          target: '—',
          met: null,
          runs: '1 run each',
        },
        {
          section: '9',
          measure: `organization: one account throttled to ${SLOW_RATE} req/s, answered calls/s of each other account (mean) vs the run without it`,
          value: `${rateRatio.toFixed(2)} (${mean(throttled).toFixed(1)} vs ${mean(one).toFixed(1)} calls/s over ${others.length} accounts; throttled account ${(throttled.ratePerAccount.get(slow) ?? 0).toFixed(1)} calls/s; wall ${seconds(throttled.wallMs)})`,
          target: '0.90–1.10',
          met: rateRatio >= 0.9 && rateRatio <= 1.1,
          runs: '1 run each',
        },
        {
          section: '9',
          measure: 'organization: output exact (key ids = fake truth over every account)',
          value: `${one.rows}, ${sharded.rows} and ${throttled.rows} rows vs ${expected.size} keys`,
          target: 'exact',
          met: one.exact && sharded.exact && throttled.exact,
          runs: '3 runs',
        },
      ];
      return { rows, data: { accounts: accounts.length, users: USERS, rate: RATE, burst: BURST, accountConcurrency: ACCOUNT_CONCURRENCY, concurrency: CONCURRENCY, shards: SHARDS, one: { ...one, ratePerAccount: undefined, processes: one.processes.map((p) => ({ processMs: p.processMs, cpuMs: p.cpuMs, maxRssKb: p.maxRssKb })) }, rateRatio, slow, sharded: { ...sharded, ratePerAccount: undefined, processes: sharded.processes.map((p) => ({ processMs: p.processMs, cpuMs: p.cpuMs, maxRssKb: p.maxRssKb })) } } };
    },
  );
}
