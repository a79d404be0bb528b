/**
 * Last-used data in the fake IAM: GetAccessKeyLastUsed and recorded uses,
 * through the real SDK client.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GetAccessKeyLastUsedCommand, ListUsersCommand } from '@aws-sdk/client-iam';
import { caught, fakeWithClients } from './fake-iam/test-support.ts';

describe('GetAccessKeyLastUsed', () => {
  test('answers like IAM: a date, service and region, or N/A for a key never used', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 30, seed: 45 });
    const keys = fake.truth().keys;
    const unused = keys.find((k) => !k.lastUsed)!;
    const answer = await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: unused.accessKeyId }));
    assert.equal(answer.UserName, unused.userName);
    assert.deepEqual(answer.AccessKeyLastUsed, { ServiceName: 'N/A', Region: 'N/A' });

    fake.mutate({ kind: 'deleteKey', accessKeyId: unused.accessKeyId });
    assert.equal((await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: unused.accessKeyId })))).name, 'NoSuchEntityException');
  });

  test('lastUsedDenied answers AccessDenied, and faults apply as to every action', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 10, seed: 46, lastUsedDenied: true });
    const key = fake.truth().keys[0]!;
    for (const id of [key.accessKeyId, 'AKIA0000000000000000']) {
      const denied = await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: id })));
      assert.equal(denied.name, 'AccessDenied');
      assert.match(denied.message, /iam:GetAccessKeyLastUsed/);
    }
    assert.ok((await iam.send(new ListUsersCommand({}))).Users?.length, 'other actions unaffected');
    fake.configure({ lastUsedDenied: false, throttleProbability: 1 });
    assert.equal((await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: key.accessKeyId })))).name, 'Throttling');
  });

  test('successful lookups are counted per key id; failed attempts are not', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 10, seed: 47, keysPerUser: { min: 1, max: 2 } }, { maxAttempts: 3 });
    const [a, b] = fake.truth().keys;
    assert.ok(a && b);
    fake.configure({ throttleProbability: 0.5 });
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: a.accessKeyId })).catch(() => undefined);
    fake.configure({ throttleProbability: 0 });
    fake.resetStats();
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: a.accessKeyId }));
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: a.accessKeyId }));
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: b.accessKeyId }));
    await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: 'AKIA0000000000000000' })));
    assert.deepEqual(fake.stats().lastUsedLookups, { [a.accessKeyId]: 2, [b.accessKeyId]: 1 });
    const served = await (await fetch(`${fake.url}/_fake/stats`)).json();
    assert.deepEqual(served.lastUsedLookups, { [a.accessKeyId]: 2, [b.accessKeyId]: 1 });
  });

  test('useKey is checked and churn can record uses without touching markers', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 12, seed: 48, keysPerUser: { min: 2, max: 2 }, rejectStaleMarkers: true });
    assert.throws(() => fake.mutate({ kind: 'useKey', accessKeyId: 'AKIA0000000000000000', service: 's3', region: 'us-east-1' }), /no access key/);
    assert.throws(() => fake.mutate({ kind: 'useKey', accessKeyId: 'x', service: 'S3!', region: '' }), (e: unknown) => (e as { problems: string[] }).problems.length === 2);
    const marker = (await iam.send(new ListUsersCommand({ MaxItems: 2 }))).Marker!;
    const uses = fake.churn({ seed: 9, count: 5, kinds: ['useKey'] });
    assert.equal(uses.length, 5);
    for (const use of uses) {
      assert.ok(use.kind === 'useKey');
      assert.deepEqual(fake.truth().keys.find((k) => k.accessKeyId === use.accessKeyId)?.lastUsed?.service !== undefined, true);
    }
    assert.ok((await iam.send(new ListUsersCommand({ MaxItems: 2, Marker: marker }))).Users?.length, 'a use is no change to a listing');
    assert.ok(!fake.churn({ seed: 9, count: 30 }).some((m) => m.kind === 'useKey'), 'churn leaves uses out unless asked');
  });
});
