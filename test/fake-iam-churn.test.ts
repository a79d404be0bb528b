/**
 * The fake IAM changing while a client reads it: mutations, seeded churn, the
 * window's ground truth, cursor markers and stale markers, all checked through
 * the real SDK clients the exporter uses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  GetAccessKeyLastUsedCommand,
  ListAccessKeysCommand,
  ListUsersCommand,
  paginateListAccessKeys,
  paginateListUsers,
  type AccessKeyMetadata,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import { generateDataset } from './fake-iam/data.ts';
import { churn } from './fake-iam/churn.ts';
import { FakeIamMutationError, type MutationResult } from './fake-iam/mutations.ts';
import { streamFor } from './fake-iam/random.ts';
import { AccountStore } from './fake-iam/store.ts';
import { caught, fakeWithClients } from './fake-iam/test-support.ts';

async function listUserNames(iam: IAMClient): Promise<string[]> {
  const names: string[] = [];
  for await (const page of paginateListUsers({ client: iam, pageSize: 100 }, {})) names.push(...(page.Users ?? []).map((u) => u.UserName ?? ''));
  return names;
}

async function listKeys(iam: IAMClient, UserName: string): Promise<AccessKeyMetadata[]> {
  const keys: AccessKeyMetadata[] = [];
  for await (const page of paginateListAccessKeys({ client: iam, pageSize: 1 }, { UserName })) keys.push(...(page.AccessKeyMetadata ?? []));
  return keys;
}

const isMutationError = (problem: RegExp) => (error: unknown) =>
  error instanceof FakeIamMutationError && error.code === 'FAKE_IAM_MUTATION' && error.problems.some((p) => problem.test(p));

describe('mutations', () => {
  test('deleteUser removes the user and its keys from every answer', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 20, seed: 3, keysPerUser: { min: 1, max: 3 } });
    const victim = fake.truth().users[4]!;
    const keyIds = fake.truth().keys.filter((k) => k.userName === victim.userName).map((k) => k.accessKeyId);

    const result = fake.mutate({ kind: 'deleteUser', userName: victim.userName });
    assert.deepEqual(result, { kind: 'deleteUser', userName: victim.userName, userId: victim.userId, deletedKeyIds: keyIds });
    assert.ok(!(await listUserNames(iam)).includes(victim.userName));
    assert.equal((await caught(iam.send(new ListAccessKeysCommand({ UserName: victim.userName })))).name, 'NoSuchEntityException');
    assert.equal((await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: keyIds[0]! })))).name, 'NoSuchEntityException');
    assert.equal(fake.truth().keys.filter((k) => keyIds.includes(k.accessKeyId)).length, 0);
  });

  test('createUser makes a listed user with fresh ids and keys dated now to the second', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 5, seed: 4 });
    const before = Date.now();
    const made = fake.mutate({ kind: 'createUser', keys: 2 });
    const after = Date.now();
    assert.equal(made.kind, 'createUser');
    assert.match(made.userId, /^AIDA[A-Z0-9]{17}$/);
    assert.ok((await listUserNames(iam)).includes(made.userName));

    const keys = await listKeys(iam, made.userName);
    assert.deepEqual(keys.map((k) => k.AccessKeyId).sort(), [...made.accessKeyIds].sort());
    for (const key of keys) {
      const created = key.CreateDate!.getTime();
      assert.equal(created % 1000, 0);
      assert.ok(created >= Math.floor(before / 1000) * 1000 && created <= after, 'CreateDate is the mutation time, rounded down');
      assert.equal(key.Status, 'Active');
      assert.match(key.AccessKeyId!, /^AKIA[A-Z0-9]{16}$/);
    }

    const named = fake.mutate({ kind: 'createUser', userName: 'new.person@corp', path: '/ops/team-a/' });
    assert.deepEqual(named, { kind: 'createUser', userName: 'new.person@corp', userId: named.kind === 'createUser' ? named.userId : '', path: '/ops/team-a/', accessKeyIds: [] });
    const listed = (await iam.send(new ListUsersCommand({ PathPrefix: '/ops/team-a/' }))).Users ?? [];
    assert.ok(listed.some((u) => u.UserName === 'new.person@corp' && u.Arn === `arn:aws:iam::123456789012:user/ops/team-a/new.person@corp`));
    assert.throws(() => fake.mutate({ kind: 'createUser', userName: 'NEW.person@corp' }), isMutationError(/already exists/));
  });

  test('renameUser keeps the UserId and the keys; the ARN follows the name', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 10, seed: 5, keysPerUser: { min: 2, max: 2 } });
    const user = fake.truth().users[2]!;
    const keyIds = fake.truth().keys.filter((k) => k.userName === user.userName).map((k) => k.accessKeyId);

    const result = fake.mutate({ kind: 'renameUser', userName: user.userName, newUserName: 'renamed-user' });
    assert.deepEqual(result, { kind: 'renameUser', userId: user.userId, userName: user.userName, newUserName: 'renamed-user' });
    const listed = ((await iam.send(new ListUsersCommand({}))).Users ?? []).find((u) => u.UserId === user.userId);
    assert.equal(listed?.UserName, 'renamed-user');
    assert.equal(listed?.Arn, `arn:aws:iam::123456789012:user${user.path}renamed-user`);
    assert.deepEqual((await listKeys(iam, 'renamed-user')).map((k) => [k.AccessKeyId, k.UserName]), keyIds.map((id) => [id, 'renamed-user']));
    assert.equal((await caught(iam.send(new ListAccessKeysCommand({ UserName: user.userName })))).name, 'NoSuchEntityException');
    assert.equal((await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: keyIds[0]! }))).UserName, 'renamed-user');

    const fresh = fake.mutate({ kind: 'renameUser', userName: 'renamed-user' });
    assert.ok(fresh.kind === 'renameUser' && fresh.newUserName !== 'renamed-user' && fresh.userId === user.userId);
  });

  test('deleteKey, createKey, rotateKey and setKeyStatus show in ListAccessKeys', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 6, seed: 6, keysPerUser: { min: 2, max: 2 } });
    const user = fake.truth().users[1]!;
    const [oldest, newest] = await listKeys(iam, user.userName);
    assert.ok(oldest && newest);

    assert.deepEqual(fake.mutate({ kind: 'deleteKey', accessKeyId: newest.AccessKeyId! }), { kind: 'deleteKey', accessKeyId: newest.AccessKeyId, userName: user.userName, userId: user.userId });
    assert.deepEqual((await listKeys(iam, user.userName)).map((k) => k.AccessKeyId), [oldest.AccessKeyId]);

    // Two keys of one user in the same second: ListAccessKeys orders them by id.
    const second = '2026-11-27T10:00:00Z';
    const a = fake.mutate({ kind: 'createKey', userName: user.userName, createDate: second, status: 'Inactive' });
    const b = fake.mutate({ kind: 'createKey', userName: user.userName, createDate: new Date(second) });
    assert.ok(a.kind === 'createKey' && b.kind === 'createKey');
    assert.equal(a.status, 'Inactive');
    assert.deepEqual(a.createDate, new Date(second));
    const sameSecond = [a.accessKeyId, b.accessKeyId].sort();
    assert.deepEqual((await listKeys(iam, user.userName)).map((k) => k.AccessKeyId), [oldest.AccessKeyId, ...sameSecond]);

    const rotated = fake.mutate({ kind: 'rotateKey', userName: user.userName });
    assert.ok(rotated.kind === 'rotateKey');
    assert.equal(rotated.deletedKeyId, oldest.AccessKeyId);
    assert.deepEqual((await listKeys(iam, user.userName)).map((k) => k.AccessKeyId), [...sameSecond, rotated.accessKeyId]);

    const changed = fake.mutate({ kind: 'setKeyStatus', accessKeyId: rotated.accessKeyId, status: 'Expired' });
    assert.deepEqual(changed, { kind: 'setKeyStatus', accessKeyId: rotated.accessKeyId, userName: user.userName, status: 'Expired', previousStatus: 'Active' });
    assert.equal((await listKeys(iam, user.userName)).find((k) => k.AccessKeyId === rotated.accessKeyId)?.Status, 'Expired');

    const keyless = fake.mutate({ kind: 'createUser' });
    const first = fake.mutate({ kind: 'rotateKey', userName: keyless.userName });
    assert.ok(first.kind === 'rotateKey' && first.deletedKeyId === null);
  });

  test('a malformed mutation or one naming nothing changes nothing and lists its problems', async (t) => {
    const { fake } = await fakeWithClients(t, { users: 4, seed: 7 });
    const before = fake.truth();
    assert.throws(() => fake.mutate({ kind: 'deleteUser', userName: 'nobody' }), isMutationError(/no user named nobody/));
    assert.throws(() => fake.mutate({ kind: 'deleteKey', accessKeyId: 'AKIA0000000000000000' }), isMutationError(/no access key/));
    assert.throws(() => fake.mutate({ kind: 'setKeyStatus', accessKeyId: 'x', status: 'Gone' as 'Active' }), isMutationError(/status must be/));
    assert.throws(() => fake.mutate({ kind: 'createUser', userName: 'bad name!', path: 'nope' }), (error: unknown) => error instanceof FakeIamMutationError && error.problems.length === 2);
    assert.throws(() => fake.mutate({ kind: 'createKey', userName: before.users[0]!.userName, createDate: 'not a date' }), isMutationError(/createDate/));
    assert.throws(() => fake.mutate({ kind: 'explode' } as never), isMutationError(/kind must be one of/));
    assert.deepEqual(fake.truth(), before);
  });

  test('the control route applies a mutation or churn and answers 400 with the problems', async (t) => {
    const { fake } = await fakeWithClients(t, { users: 8, seed: 8, keysPerUser: { min: 1, max: 2 } });
    const post = async (body: unknown) => {
      const response = await fetch(`${fake.url}/_fake/mutate`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
      return { status: response.status, body: await response.json() };
    };
    const victim = fake.truth().users[0]!;
    const deleted = await post({ kind: 'deleteUser', userName: victim.userName });
    assert.equal(deleted.status, 200);
    assert.equal(deleted.body.userId, victim.userId);
    assert.ok(!fake.truth().users.some((u) => u.userId === victim.userId));

    const churned = await post({ churn: { seed: 1, count: 5, kinds: ['setKeyStatus'] } });
    assert.equal(churned.status, 200);
    assert.equal(churned.body.length, 5);
    assert.ok(churned.body.every((m: MutationResult) => m.kind === 'setKeyStatus'));

    const bad = await post({ kind: 'createKey', userName: 'nobody' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'FAKE_IAM_MUTATION');
    assert.deepEqual(bad.body.problems, ['no user named nobody']);
    assert.equal((await post({ churn: { seed: 'x', count: -1 } })).body.problems.length, 2);
    assert.equal((await post('{not json')).status, 400);
    assert.equal(fake.stats().totalCalls, 0, 'mutations are not API calls');
  });
});

describe('churn', () => {
  const withoutDates = (results: MutationResult[]) => results.map((r) => ({ ...r, createDate: undefined }));

  test('the same seed on the same data applies the same mutations', async (t) => {
    const options = { users: 40, seed: 11, keysPerUser: { min: 0, max: 3 } };
    const { fake: a } = await fakeWithClients(t, options);
    const { fake: b } = await fakeWithClients(t, options);
    b.mutate({ kind: 'createUser', userName: 'only-in-b' }); // draws from b's own stream, not churn's
    b.mutate({ kind: 'deleteUser', userName: 'only-in-b' });

    const first = a.churn({ seed: 5, count: 60 });
    assert.deepEqual(withoutDates(b.churn({ seed: 5, count: 60 })), withoutDates(first));
    assert.equal(first.length, 60);
    assert.deepEqual(new Set(first.map((m) => m.kind)), new Set(['deleteUser', 'createUser', 'renameUser', 'deleteKey', 'createKey', 'rotateKey', 'setKeyStatus']));
    const names = (truth: ReturnType<typeof a.truth>) => truth.users.map((u) => [u.userName, u.userId]);
    assert.deepEqual(names(b.truth()), names(a.truth()));
    assert.notDeepEqual(withoutDates(a.churn({ seed: 6, count: 10 })), withoutDates(b.churn({ seed: 7, count: 10 })));
  });

  test('churn keeps to the kinds asked for and stops when nothing is left to act on', async (t) => {
    const { fake } = await fakeWithClients(t, { users: 3, seed: 12, keysPerUser: { min: 1, max: 1 } });
    const applied = fake.churn({ seed: 1, count: 10, kinds: ['deleteKey'] });
    assert.equal(applied.length, 3, 'three keys to delete, then none');
    assert.equal(fake.truth().keys.length, 0);
    assert.deepEqual(fake.churn({ seed: 1, count: 4, kinds: ['deleteUser', 'createKey'] }).map((m) => m.kind).sort().slice(-1), ['deleteUser']);
    assert.throws(() => fake.churn({ seed: 1, count: 1, kinds: ['nope' as 'deleteKey'] }), FakeIamMutationError);
  });

  test('the store keeps its indexes and the window stays exact over many seeded rounds', () => {
    for (let round = 0; round < 25; round++) {
      const store = new AccountStore(generateDataset({ users: 30, seed: round, keysPerUser: { min: 0, max: 4 }, accountId: '123456789012' }));
      const random = streamFor(round, 'test');
      const atStart = new Set(store.keysById.keys());
      const created = new Set<string>();
      for (let step = 0; step < 8; step++) {
        for (const result of churn(store, { seed: round * 100 + step, count: 1 + Math.floor(random() * 10) })) {
          if (result.kind === 'createKey' || result.kind === 'rotateKey') created.add(result.accessKeyId);
          if (result.kind === 'createUser') for (const id of result.accessKeyIds) created.add(id);
        }
        const now = new Set(store.keysById.keys());
        const window = store.window.truth(store, () => true);
        const ids = window.map((k) => k.accessKeyId);
        assert.equal(new Set(ids).size, ids.length, 'a key twice in the window');
        assert.deepEqual(new Set(window.filter((k) => k.whole).map((k) => k.accessKeyId)), new Set([...atStart].filter((id) => now.has(id))), `round ${round}: whole keys`);
        assert.deepEqual(new Set(ids), new Set([...atStart, ...created]), `round ${round}: window keys`);
        // The indexes agree with each other.
        assert.deepEqual(store.users.map((u) => u.userName), [...store.users.map((u) => u.userName)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
        assert.equal(store.usersByName.size, store.users.length);
        assert.equal(store.usersById.size, store.users.length);
        const listed = store.users.flatMap((u) => store.keysByUser.get(u.userName) ?? []);
        assert.equal(listed.length, store.keysById.size);
        for (const key of listed) assert.equal(store.keysById.get(key.accessKeyId), key);
        for (const user of store.users) {
          const keys = store.keysByUser.get(user.userName) ?? [];
          for (let i = 1; i < keys.length; i++) assert.ok(keys[i - 1]!.createDate <= keys[i]!.createDate, 'keys out of order');
        }
      }
    }
  });
});

describe('window truth', () => {
  test('after a sequence of changes, whole keys are exactly those present throughout', async (t) => {
    const { fake } = await fakeWithClients(t, { users: 12, seed: 21, keysPerUser: { min: 2, max: 2 } });
    const [u0, u1, u2, u3] = fake.truth().users;
    assert.ok(u0 && u1 && u2 && u3);
    const keysOf = (name: string) => fake.truth().keys.filter((k) => k.userName === name).map((k) => k.accessKeyId);
    const [k0] = keysOf(u0.userName);
    const u1Keys = keysOf(u1.userName);
    const u2Keys = keysOf(u2.userName);
    fake.mutate({ kind: 'createKey', userName: u3.userName }); // before the window: whole once it starts
    fake.startWindow();

    fake.mutate({ kind: 'deleteKey', accessKeyId: k0! });
    const made = fake.mutate({ kind: 'createKey', userName: u0.userName });
    const brief = fake.mutate({ kind: 'createKey', userName: u0.userName });
    assert.ok(made.kind === 'createKey' && brief.kind === 'createKey');
    fake.mutate({ kind: 'deleteKey', accessKeyId: brief.accessKeyId });
    fake.mutate({ kind: 'renameUser', userName: u1.userName, newUserName: 'zz-renamed' });
    fake.mutate({ kind: 'deleteUser', userName: u2.userName });
    fake.mutate({ kind: 'setKeyStatus', accessKeyId: u1Keys[0]!, status: 'Inactive' });

    const window = new Map(fake.windowTruth().map((k) => [k.accessKeyId, k]));
    assert.equal(window.get(k0!)?.whole, false);
    assert.equal(window.get(made.accessKeyId)?.whole, false);
    assert.equal(window.get(brief.accessKeyId)?.whole, false, 'created and deleted within the window');
    for (const id of u1Keys) assert.deepEqual(window.get(id), { accessKeyId: id, userId: u1.userId, userName: 'zz-renamed', status: id === u1Keys[0] ? 'Inactive' : 'Active', whole: true, userRenamed: true });
    for (const id of u2Keys) assert.deepEqual({ ...window.get(id), status: undefined }, { accessKeyId: id, userId: u2.userId, userName: u2.userName, status: undefined, whole: false, userRenamed: false });
    const untouched = fake.truth().keys.filter((k) => k.userName === u3.userName);
    assert.equal(untouched.length, 3);
    for (const key of untouched) assert.equal(window.get(key.accessKeyId)?.whole, true);
    assert.equal(window.size, fake.truth().keys.length + 1 + 1 + u2Keys.length, 'present keys plus the three deleted ones');

    const served = await (await fetch(`${fake.url}/_fake/window`)).json();
    assert.deepEqual(served, JSON.parse(JSON.stringify(fake.windowTruth())));

    await fetch(`${fake.url}/_fake/window/start`, { method: 'POST' });
    const fresh = fake.windowTruth();
    assert.equal(fresh.length, fake.truth().keys.length);
    assert.ok(fresh.every((k) => k.whole && !k.userRenamed));
  });

  test('keys of vanished and denied users are left out, by the fault options in force when asked', async (t) => {
    const { fake } = await fakeWithClients(t, { users: 40, seed: 22, keysPerUser: { min: 1, max: 2 }, vanishedFraction: 0.1, deniedFraction: 0.1 });
    const readable = new Set(fake.readableKeys().map((k) => k.accessKeyId));
    const gone = fake.truth().users.find((u) => u.vanished)!;
    fake.mutate({ kind: 'deleteUser', userName: gone.userName });
    assert.deepEqual(new Set(fake.windowTruth().map((k) => k.accessKeyId)), readable);
    fake.configure({ vanishedFraction: 0, deniedFraction: 0 });
    assert.equal(fake.windowTruth().length, fake.truth().keys.length + fake.windowTruth().filter((k) => !k.whole).length);
    assert.ok(fake.windowTruth().some((k) => k.userId === gone.userId && !k.whole), 'a deleted user keeps its fate');
  });

  test('fates stay with users through changes, and new users draw theirs on the same scale', async (t) => {
    const { fake } = await fakeWithClients(t, { users: 100, seed: 23, vanishedFraction: 0.2 });
    const vanished = () => new Set(fake.truth().users.filter((u) => u.vanished).map((u) => u.userId));
    const before = vanished();
    const created = fake.churn({ seed: 3, count: 200, kinds: ['createUser', 'deleteUser'] });
    const after = vanished();
    for (const id of after) {
      const isNew = created.some((m) => m.kind === 'createUser' && m.userId === id);
      assert.ok(before.has(id) || isNew, 'an old user changed fate');
    }
    for (const id of before) if (fake.truth().users.some((u) => u.userId === id)) assert.ok(after.has(id), 'an old user lost its fate');
    const newUsers = fake.truth().users.filter((u) => created.some((m) => m.kind === 'createUser' && m.userId === u.userId));
    assert.ok(newUsers.some((u) => u.vanished) && newUsers.some((u) => !u.vanished), 'new users get fates too');
  });
});

describe('markers under change', () => {
  test('ListAccessKeys paging across keys deleted and created between pages loses no key present throughout', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 3, seed: 31, keysPerUser: { min: 6, max: 6 } });
    const user = fake.truth().users[0]!;
    const all = fake.truth().keys.filter((k) => k.userName === user.userName).map((k) => k.accessKeyId);

    const seen: string[] = [];
    let Marker: string | undefined;
    let page = 0;
    do {
      const answer = await iam.send(new ListAccessKeysCommand({ UserName: user.userName, MaxItems: 2, ...(Marker ? { Marker } : {}) }));
      seen.push(...(answer.AccessKeyMetadata ?? []).map((k) => k.AccessKeyId!));
      Marker = answer.Marker;
      if (page++ === 0) {
        // Between pages: one key already returned goes, one not yet returned goes,
        // and keys arrive before and after the cursor.
        fake.mutate({ kind: 'deleteKey', accessKeyId: all[0]! });
        fake.mutate({ kind: 'deleteKey', accessKeyId: all[3]! });
        fake.mutate({ kind: 'createKey', userName: user.userName, createDate: '2014-01-01T00:00:00Z' });
        fake.mutate({ kind: 'createKey', userName: user.userName });
      }
    } while (Marker);

    const throughout = all.filter((_, i) => i !== 0 && i !== 3);
    for (const id of throughout) assert.equal(seen.filter((s) => s === id).length, 1, `key ${id} present throughout`);
    assert.equal(new Set(seen).size, seen.length, 'no key twice');
    const whole = fake.windowTruth().filter((k) => k.whole && k.userId === user.userId).map((k) => k.accessKeyId);
    assert.deepEqual(new Set(whole), new Set(throughout));
  });

  test('ListUsers paging across users deleted and created between pages lists each remaining user once', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 30, seed: 32 });
    const names = fake.truth().users.map((u) => u.userName);
    const seen: string[] = [];
    let Marker: string | undefined;
    let page = 0;
    do {
      const answer = await iam.send(new ListUsersCommand({ MaxItems: 7, ...(Marker ? { Marker } : {}) }));
      seen.push(...(answer.Users ?? []).map((u) => u.UserName!));
      Marker = answer.Marker;
      if (page++ === 1) {
        fake.mutate({ kind: 'deleteUser', userName: seen[seen.length - 1]! }); // the very user the marker names
        fake.mutate({ kind: 'deleteUser', userName: names[names.length - 1]! });
      }
    } while (Marker);
    assert.deepEqual(seen, names.slice(0, -1));
  });

  test('with rejectStaleMarkers, a marker issued before a change answers ValidationError and a restart works', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 10, seed: 33, keysPerUser: { min: 3, max: 3 }, rejectStaleMarkers: true });
    const user = fake.truth().users[0]!;
    const usersMarker = (await iam.send(new ListUsersCommand({ MaxItems: 2 }))).Marker!;
    const keysMarker = (await iam.send(new ListAccessKeysCommand({ UserName: user.userName, MaxItems: 1 }))).Marker!;
    assert.ok((await iam.send(new ListUsersCommand({ MaxItems: 2, Marker: usersMarker }))).Users?.length, 'fresh markers are honoured');

    fake.mutate({ kind: 'setKeyStatus', accessKeyId: fake.truth().keys[5]!.accessKeyId, status: 'Inactive' });
    for (const call of [
      iam.send(new ListUsersCommand({ MaxItems: 2, Marker: usersMarker })),
      iam.send(new ListAccessKeysCommand({ UserName: user.userName, Marker: keysMarker })),
    ]) {
      const error = await caught(call);
      assert.equal(error.name, 'ValidationError');
      assert.equal(error.$fault, 'client');
      assert.equal(error.$metadata?.httpStatusCode, 400);
    }
    const restarted = await iam.send(new ListUsersCommand({ MaxItems: 2 }));
    assert.ok((await iam.send(new ListUsersCommand({ MaxItems: 2, Marker: restarted.Marker! }))).Users?.length);

    fake.configure({ rejectStaleMarkers: false });
    assert.ok((await iam.send(new ListUsersCommand({ MaxItems: 2, Marker: usersMarker }))).Users?.length, 'honoured again once the option is off');
    const forged = Buffer.from(JSON.stringify({ list: 'users', after: 'a', gen: 999 })).toString('base64url');
    assert.equal((await caught(iam.send(new ListUsersCommand({ Marker: forged })))).name, 'ValidationError', 'a marker from the future is garbage');
  });
});

describe('STS GetCallerIdentity', () => {
  test('answers the served account, or the account of callerAccountId', async (t) => {
    const { fake, sts } = await fakeWithClients(t, { users: 3, accountId: '210987654321' });
    const identity = await sts.send(new GetCallerIdentityCommand({}));
    assert.deepEqual(
      { Account: identity.Account, Arn: identity.Arn, UserId: identity.UserId },
      { Account: '210987654321', Arn: 'arn:aws:iam::210987654321:user/key-exporter', UserId: 'AIDAKEYEXPORTERFAKE01' },
    );
    assert.match(identity.$metadata.requestId ?? '', /^[0-9a-f-]{36}$/);

    fake.configure({ callerAccountId: '111122223333' });
    const other = await sts.send(new GetCallerIdentityCommand({}));
    assert.equal(other.Account, '111122223333');
    assert.equal(other.Arn, 'arn:aws:iam::111122223333:user/key-exporter');
    assert.equal(fake.stats().calls.GetCallerIdentity, 2);
    assert.throws(() => fake.configure({ callerAccountId: '42' }), /callerAccountId must be null or 12 digits/);
  });

  test('goes through the same fault path as IAM: bad credentials, throttles, rate limit', async (t) => {
    const { fake, sts } = await fakeWithClients(t, { users: 3, invalidCredentials: true });
    const denied = await caught(sts.send(new GetCallerIdentityCommand({})));
    assert.equal(denied.name, 'InvalidClientTokenId');
    assert.equal(denied.$metadata?.httpStatusCode, 403);

    fake.configure({ invalidCredentials: false, throttleProbability: 1 });
    const throttled = await caught(sts.send(new GetCallerIdentityCommand({})));
    assert.equal(throttled.name, 'Throttling');
    fake.configure({ throttleProbability: 0, rateLimit: { perSecond: 0.001, burst: 1 } });
    await sts.send(new GetCallerIdentityCommand({}));
    assert.equal((await caught(sts.send(new GetCallerIdentityCommand({})))).name, 'Throttling');
    const stats = fake.stats();
    assert.equal(stats.calls.GetCallerIdentity, 4);
    assert.equal(stats.rateLimited, 1);
    assert.deepEqual(stats.errors, { InvalidClientTokenId: 1, Throttling: 2 });

    const raw = await fetch(fake.url, { method: 'POST', body: 'Action=GetCallerIdentity&Version=2011-06-15', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.match(await raw.text(), /^<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">/, 'STS errors in the STS namespace');
  });
});
