import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, ListRolesCommand, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { runCli, testEnv } from './support/cli.ts';
import { motoUnavailable, startMoto } from './support/moto.ts';
import { onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { plainPolicy, policyActions } from './support/policy.ts';
import { withTemp } from './support/scope.ts';

const PIPELINE = fileURLToPath(new URL('../pipeline/', import.meta.url));

/** IAM actions of the S3 operations (their names differ from the API's). */
const S3_ACTIONS: Record<string, string[]> = {
  GetObject: ['s3:GetObject'],
  HeadObject: ['s3:GetObject'],
  PutObject: ['s3:PutObject'],
  CopyObject: ['s3:GetObject', 's3:PutObject'],
  DeleteObject: ['s3:DeleteObject'],
  DeleteObjects: ['s3:DeleteObject'],
  ListObjectsV2: ['s3:ListBucket'],
  HeadBucket: ['s3:ListBucket'],
  CreateMultipartUpload: ['s3:PutObject'],
  UploadPart: ['s3:PutObject'],
  CompleteMultipartUpload: ['s3:PutObject'],
  AbortMultipartUpload: ['s3:AbortMultipartUpload'],
};

const SERVICE_PREFIX: Record<string, string> = { iam: 'iam', sts: 'sts', s3: 's3', organizations: 'organizations' };

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

test('every AWS operation the program calls is granted by deploy/iam-policy.json', async () => {
  const granted = policyActions();
  const used = new Set<string>();
  for (const file of await sources(PIPELINE)) {
    const text = await readFile(file, 'utf8');
    for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'@aws-sdk\/(client-[a-z0-9-]+|lib-storage)'/g)) {
      const service = m[2] === 'lib-storage' ? 's3' : m[2]!.slice('client-'.length);
      for (const raw of m[1]!.split(',')) {
        const name = raw.replace(/^\s*type\s+/, '').split(/\s+as\s+/)[0]!.trim();
        const op = name.endsWith('Command') ? name.slice(0, -'Command'.length) : name.startsWith('paginate') ? name.slice('paginate'.length) : name === 'Upload' ? 'CreateMultipartUpload' : undefined;
        if (!op || !text.includes(name + (name.endsWith('Command') ? '(' : ''))) continue;
        for (const action of service === 's3' ? (S3_ACTIONS[op] ?? [`s3:${op}`]) : [`${SERVICE_PREFIX[service] ?? service}:${op}`]) used.add(action);
      }
    }
  }
  assert.ok(used.has('iam:ListUsers') && used.has('iam:ListAccessKeys') && used.has('sts:GetCallerIdentity'), [...used].join(', '));
  assert.deepEqual([...used].filter((a) => !granted.has(a)), [], 'called but not in the policy');
});

const unavailable = motoUnavailable();
const skip = unavailable && process.env.CI !== 'true' ? unavailable : false;

test('a user holding only the plain-mode policy exports every key exactly, against moto enforcing IAM policies', { skip }, async () => {
  assert.equal(unavailable, undefined, unavailable);
  // The first requests are unauthenticated (the setup below); enforcement starts after them.
  const moto = await startMoto({ env: { INITIAL_NO_AUTH_ACTION_COUNT: '60' } });
  const admin = new IAMClient({ region: 'us-east-1', endpoint: moto.url, credentials: { accessKeyId: 'AKIDADMIN', secretAccessKey: 'x' } });
  try {
    for (let i = 0; i < 12; i++) {
      await admin.send(new CreateUserCommand({ UserName: `user${i}` }));
      if (i % 3 !== 0) await admin.send(new CreateAccessKeyCommand({ UserName: `user${i}` }));
    }
    await admin.send(new CreateUserCommand({ UserName: 'key-exporter' }));
    await admin.send(new PutUserPolicyCommand({ UserName: 'key-exporter', PolicyName: 'iam-key-export', PolicyDocument: JSON.stringify(plainPolicy()) }));
    const { AccessKey } = await admin.send(new CreateAccessKeyCommand({ UserName: 'key-exporter' }));
    const exporter = new IAMClient({ region: 'us-east-1', endpoint: moto.url, credentials: { accessKeyId: AccessKey!.AccessKeyId!, secretAccessKey: AccessKey!.SecretAccessKey! } });
    // Spend what is left of the unauthenticated requests on an action the policy does not grant, until it is denied.
    let enforced = false;
    for (let i = 0; i < 80 && !enforced; i++) {
      enforced = await exporter.send(new ListRolesCommand({})).then(
        () => false,
        (err: { name?: string }) => err.name === 'AccessDenied' || err.name === 'AccessDeniedException',
      );
    }
    exporter.destroy();
    assert.ok(enforced, 'moto enforces policies now');
    await withTemp(async (out) => {
      const env = testEnv({ AWS_ACCESS_KEY_ID: AccessKey!.AccessKeyId!, AWS_SECRET_ACCESS_KEY: AccessKey!.SecretAccessKey!, AWS_ENDPOINT_URL: moto.url });
      const r = await runCli(['--out', out, '--format', 'csv', '--last-used', 'off'], env);
      assert.equal(r.code, 0, r.stderr);
      const { rows } = await publishedRows(out, 'csv');
      assert.equal(rows.length, 9, 'every key of the 12 users (8 keys) plus the exporter’s own');
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.match(manifest.caller_arn ?? '', /key-exporter/);
    });
  } finally {
    admin.destroy();
    await moto.close();
  }
});
