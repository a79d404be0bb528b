import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, ListRolesCommand, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { runCli, testEnv } from './support/cli.ts';
import { motoUnavailable, startMoto } from './support/moto.ts';
import { onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { calledActions, plainPolicy, policyActions } from './support/policy.ts';
import { withTemp } from './support/scope.ts';

test('every AWS operation the program calls is granted by deploy/iam-policy.json', async () => {
  const granted = policyActions();
  const used = await calledActions();
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
