/**
 * deploy/: the policies grant exactly what the code calls (least privilege), and the
 * scheduler manifests run the exporter as shards of one snapshot: the Kubernetes
 * CronJob's shell derives the same --snapshot-id for every index from the Job name,
 * and the AWS Batch job definition's command parses as a shard of an array job.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCommand } from '../pipeline/config.ts';
import { calledActions } from './support/policy.ts';
import { withTemp } from './support/scope.ts';

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));

interface Statement {
  readonly Sid: string;
  readonly Action: string | readonly string[];
  readonly Resource?: string | readonly string[];
  readonly Principal?: unknown;
}

async function statements(file: string): Promise<Statement[]> {
  return (JSON.parse(await readFile(join(DEPLOY, file), 'utf8')) as { Statement: Statement[] }).Statement;
}

const actionsOf = (s: readonly Statement[]) => new Set(s.flatMap((x) => (typeof x.Action === 'string' ? [x.Action] : x.Action)));
const sorted = (s: Iterable<string>) => [...s].sort();
/** Output permissions (the store), granted whether or not this build calls them yet. */
const isOutput = (a: string) => a.startsWith('s3:') || a.startsWith('kms:');

test('the member-account role grants exactly the IAM actions the code calls', async () => {
  const called = await calledActions();
  assert.deepEqual(sorted(actionsOf(await statements('member-role-policy.json'))), sorted([...called].filter((a) => a.startsWith('iam:'))));
  const trust = await statements('member-role-trust-policy.json');
  assert.deepEqual(sorted(actionsOf(trust)), ['sts:AssumeRole']);
  assert.equal(trust.length, 1);
});

test('the organization exporter policy grants every action the code calls, and no other besides its output', async () => {
  const called = await calledActions();
  const policy = await statements('iam-policy-organization.json');
  const granted = actionsOf(policy);
  assert.deepEqual([...called].filter((a) => !granted.has(a)), [], 'called but not granted');
  assert.deepEqual(sorted([...granted].filter((a) => !isOutput(a))), sorted([...called].filter((a) => !isOutput(a))), 'granted but never called');
  const assume = policy.find((s) => actionsOf([s]).has('sts:AssumeRole'))!;
  assert.match(String(assume.Resource), /^arn:aws:iam::\*:role\/[A-Z_]+$/, 'AssumeRole only into the one member role');
  // The single-account policy covers the accounts dataset's calls too.
  const single = actionsOf(await statements('iam-policy.json'));
  for (const a of ['iam:GetAccountSummary', 'iam:ListAccountAliases']) assert.ok(single.has(a), a);
});

test('Kubernetes CronJob: an Indexed Job of N shards whose pods all derive one --snapshot-id from the scheduled time', async () => {
  const yaml = await readFile(join(DEPLOY, 'kubernetes', 'cronjob.yaml'), 'utf8');
  const one = (re: RegExp) => {
    const all = [...yaml.matchAll(new RegExp(re.source, 'gm'))];
    assert.equal(all.length, 1, `${re}: once`);
    return all[0]![1]!;
  };
  assert.equal(one(/^\s+completionMode: (\S+)/), 'Indexed');
  const n = one(/^\s+completions: (\d+)/);
  assert.equal(one(/^\s+parallelism: (\d+)/), n, 'parallelism = completions');
  assert.equal(one(/- name: SHARDS\n\s+value: "(\d+)"/), n, '--shards = completions');
  assert.ok(Number(one(/^\s+backoffLimitPerIndex: (\d+)/)) > 0);
  assert.equal(one(/^\s+restartPolicy: (\S+)/), 'Never');
  assert.equal(one(/fieldPath: (.+)$/), "metadata.labels['batch.kubernetes.io/job-name']");
  // The container's shell, run with a stand-in exporter that prints what it was given.
  const script = one(/^\s+- \|\n((?:\s{18}.*\n)+)/).replace(/^ {18}/gm, '');
  await withTemp(async (dir) => {
    const stub = join(dir, 'iam-key-export');
    await writeFile(stub, '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n');
    await chmod(stub, 0o755);
    const minutes = Math.floor(Date.UTC(2026, 10, 28, 2, 10) / 60_000); // the 02:10 run of 2026-11-28
    const env = { PATH: `${dir}:${process.env.PATH}`, SHARDS: n, OUT: 's3://bucket/prefix', ROLE_NAME: 'OrganizationAccountAccessRole', JOB_NAME: `iam-key-export-${minutes}` };
    const outs = [0, 1, 2, 3].map((index) => spawnSync('/bin/sh', ['-c', script], { env: { ...env, JOB_COMPLETION_INDEX: String(index) }, encoding: 'utf8' }));
    for (const r of outs) assert.equal(r.status, 0, r.stderr);
    const argv = outs[0]!.stdout.trim().split('\n');
    assert.deepEqual(new Set(outs.map((r) => r.stdout)).size, 1, 'every index gets the same arguments');
    assert.equal(argv[argv.indexOf('--snapshot-id') + 1], '20261128T021000Z');
    for (const index of [0, 3]) {
      const parsed = parseCommand(argv, { JOB_COMPLETION_INDEX: String(index) });
      assert.equal(parsed.kind, 'run');
      if (parsed.kind !== 'run') return;
      assert.deepEqual(parsed.config.shard, { index, count: Number(n) });
      assert.equal(parsed.config.snapshotId, '20261128T021000Z');
      assert.equal(parsed.config.role?.name, 'OrganizationAccountAccessRole');
    }
    const bad = spawnSync('/bin/sh', ['-c', script], { env: { ...env, JOB_NAME: 'manual-run' }, encoding: 'utf8' });
    assert.equal(bad.status, 2, 'a Job name without the minutes suffix is a configuration error');
    assert.match(bad.stderr, /snapshot-id/);
  });
});

test('AWS Batch job definition: an array job whose command parses as a shard of one snapshot', async () => {
  const def = JSON.parse(await readFile(join(DEPLOY, 'aws-batch', 'job-definition.json'), 'utf8')) as { parameters: Record<string, string>; containerProperties: { command: string[] }; retryStrategy: { attempts: number } };
  const parameters: Record<string, string> = { ...def.parameters, snapshotId: '20261128T021000Z', roleName: 'OrganizationAccountAccessRole' };
  const [program, ...argv] = def.containerProperties.command.map((a) => (a.startsWith('Ref::') ? parameters[a.slice(5)]! : a));
  assert.equal(program, 'iam-key-export');
  const parsed = parseCommand(argv, { AWS_BATCH_JOB_ARRAY_INDEX: '2' });
  assert.equal(parsed.kind, 'run');
  if (parsed.kind !== 'run') return;
  assert.deepEqual(parsed.config.shard, { index: 2, count: Number(def.parameters.shards) });
  assert.equal(parsed.config.snapshotId, '20261128T021000Z');
  assert.ok(def.retryStrategy.attempts > 1, 'a killed shard is retried');
});
