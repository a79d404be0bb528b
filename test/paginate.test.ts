import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IAMClient, ListUsersCommand, type AccessKeyMetadata } from '@aws-sdk/client-iam';
import { decodeToken, encodeToken, paginateAccessKeys, paginateUsers, type PaginationConfig } from '../pipeline/source/paginate.ts';
import { ExportError } from '../pipeline/errors.ts';
import { stubIam } from './support/stub-iam.ts';
import { mulberry32 } from './fake-iam/random.ts';

function keysOf(n: number): AccessKeyMetadata[] {
  return Array.from({ length: n }, (_, i) => ({ UserName: `u${n}`, AccessKeyId: `AKIA${n}x${i}`, Status: 'Active', CreateDate: new Date(i * 1000) }));
}

test('paging with MaxItems and resuming from NextToken yields every item once, in order, for every n, PageSize and MaxItems', async () => {
  const data: Record<string, AccessKeyMetadata[]> = {};
  for (let n = 0; n <= 5; n++) data[`u${n}`] = keysOf(n);
  const { client } = stubIam(data);
  for (let n = 0; n <= 5; n++) {
    for (let pageSize = 1; pageSize <= 3; pageSize++) {
      for (const maxItems of [1, 2, 3, 4, undefined]) {
        const label = `n=${n} PageSize=${pageSize} MaxItems=${maxItems}`;
        const seen: string[] = [];
        let token: string | undefined;
        let iterations = 0;
        do {
          iterations++;
          assert.ok(iterations <= n + 2, `${label}: does not terminate`);
          let last: { IsTruncated: boolean; NextToken?: string } | undefined;
          let inThisIteration = 0;
          for await (const page of paginateAccessKeys(client, {
            UserName: `u${n}`,
            PaginationConfig: { PageSize: pageSize, ...(maxItems ? { MaxItems: maxItems } : {}), ...(token ? { StartingToken: token } : {}) },
          })) {
            assert.ok(page.AccessKeyMetadata.length <= pageSize, `${label}: page larger than PageSize`);
            inThisIteration += page.AccessKeyMetadata.length;
            seen.push(...page.AccessKeyMetadata.map((k) => k.AccessKeyId as string));
            assert.equal(page.IsTruncated, page.NextToken !== undefined, `${label}: IsTruncated agrees with NextToken`);
            last = page;
          }
          if (maxItems) assert.ok(inThisIteration <= maxItems, `${label}: more than MaxItems in one iteration`);
          token = last?.NextToken;
        } while (token);
        assert.deepEqual(seen, data[`u${n}`]!.map((k) => k.AccessKeyId), label);
      }
    }
  }
});

test('a NextToken cut inside a server page resumes at the next item of that page', async () => {
  const { client, requests } = stubIam({ u: keysOf(5) });
  const first = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 3, MaxItems: 2 } })) first.push(p);
  assert.equal(first.length, 1);
  assert.deepEqual(decodeToken(first[0]!.NextToken!), { marker: undefined, skip: ['AKIA5x0', 'AKIA5x1'] }, 'the token names what was yielded, not how many');
  const rest = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 3, StartingToken: first[0]!.NextToken! } })) rest.push(...p.AccessKeyMetadata);
  assert.deepEqual(rest.map((k) => k.AccessKeyId), ['AKIA5x2', 'AKIA5x3', 'AKIA5x4']);
  assert.ok(requests.every((r) => r.MaxItems === 3), 'PageSize is the MaxItems of every request');
});

test('a malformed StartingToken is a PAGINATION_TOKEN_INVALID error before any call', async () => {
  const { client, requests } = stubIam({ u: keysOf(2) });
  const b64 = (json: string) => Buffer.from(json).toString('base64url');
  const oldPositional = `ike1.${b64('{"m":null,"s":1}')}`;
  // A well-formed body is not enough: without this format's tag (another version's, or none) it is not ours.
  const wellFormed = b64('{"m":null,"e":[]}');
  const otherFormats = [`ike1.${wellFormed}`, `ike3.${wellFormed}`, wellFormed];
  // JSON that is not an object (null above all) is rejected with the code, not a TypeError.
  const notObjects = ['null', '[]', '"x"', '5'].map((json) => `ike2.${b64(json)}`);
  for (const bad of ['garbage', 'ike2.!!!', `ike2.${b64('{"m":1,"e":[]}')}`, `ike2.${b64('{"m":null,"e":[1]}')}`, `ike2.${b64('{"m":null}')}`, oldPositional, ...otherFormats, ...notObjects]) {
    await assert.rejects(
      async () => {
        for await (const _ of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { StartingToken: bad } })) void _;
      },
      (err: unknown) => err instanceof ExportError && err.code === 'PAGINATION_TOKEN_INVALID',
    );
  }
  assert.equal(requests.length, 0);
});

test('PageSize outside 1..1000 and a non-positive MaxItems are rejected, the message naming the setting and the value', async () => {
  const { client } = stubIam({ u: keysOf(1) });
  const cases: [PaginationConfig, RegExp][] = [
    [{ PageSize: 0 }, /PageSize must be an integer in 1\.\.1000, got 0$/],
    [{ PageSize: 1001 }, /PageSize must be an integer in 1\.\.1000, got 1001$/],
    [{ PageSize: 1.5 }, /PageSize must be an integer in 1\.\.1000, got 1\.5$/],
    [{ MaxItems: 0 }, /MaxItems must be a positive integer, got 0$/],
  ];
  for (const [cfg, message] of cases) {
    await assert.rejects(async () => {
      for await (const _ of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: cfg })) void _;
    }, (err: unknown) => err instanceof RangeError && message.test(err.message));
  }
});

test('users are paged with the same token semantics', async () => {
  const users = Array.from({ length: 7 }, (_, i) => ({ UserName: `user${i}`, UserId: `AIDA${i}`, Arn: `arn:aws:iam::123456789012:user/user${i}`, Path: '/', CreateDate: new Date(0) }));
  const { client } = stubIam({}, users);
  const seen: string[] = [];
  let token: string | undefined;
  let iterations = 0;
  do {
    assert.ok(++iterations <= 3, `does not terminate: ${seen.join(',')}`); // 7 users, 3 an iteration
    let last;
    for await (const p of paginateUsers(client, { PaginationConfig: { PageSize: 2, MaxItems: 3, ...(token ? { StartingToken: token } : {}) } })) {
      seen.push(...p.Users.map((u) => u.UserName as string));
      last = p;
    }
    token = last?.NextToken;
  } while (token);
  assert.deepEqual(seen, users.map((u) => u.UserName));
});

test('tokens round-trip through encode and decode', () => {
  for (const pos of [{ marker: undefined, skip: [] }, { marker: 'abc/=+', skip: ['AKIA1', 'AKIA2'] }]) assert.deepEqual(decodeToken(encodeToken(pos)), pos);
});

test('a NextToken stored in a checkpoint by an earlier build still resumes: the token format is pinned', async () => {
  // ike2. + base64url('{"m":null,"e":["AKIA4x0","AKIA4x1"]}'), as a run of this format wrote it.
  const stored = 'ike2.eyJtIjpudWxsLCJlIjpbIkFLSUE0eDAiLCJBS0lBNHgxIl19';
  assert.equal(encodeToken({ marker: undefined, skip: ['AKIA4x0', 'AKIA4x1'] }), stored);
  const { client } = stubIam({ u: keysOf(4) });
  assert.deepEqual(await rest(client, stored, 2), ['AKIA4x2', 'AKIA4x3']);
});

const key = (id: string, second: number): AccessKeyMetadata => ({ UserName: 'u', AccessKeyId: id, Status: 'Active', CreateDate: new Date(second * 1000) });

/** Pages `user` to the end from `token` (no MaxItems), returning the ids. */
async function rest(client: ReturnType<typeof stubIam>['client'], token: string, pageSize: number): Promise<string[]> {
  const ids: string[] = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: pageSize, StartingToken: token } })) ids.push(...p.AccessKeyMetadata.map((k) => k.AccessKeyId!));
  return ids;
}

test('a cut resumes after what it yielded even when a key before the cut was deleted and one was added meanwhile', async () => {
  const keys = [key('K1', 1), key('K2', 2), key('K3', 3), key('K4', 4), key('K5', 5)];
  const { client } = stubIam({ u: keys });
  let token: string | undefined;
  const first: string[] = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 5, MaxItems: 2 } })) {
    first.push(...p.AccessKeyMetadata.map((k) => k.AccessKeyId!));
    token = p.NextToken;
  }
  assert.deepEqual(first, ['K1', 'K2']);
  // Rotation between the kill and the rerun: K1 deleted, K0 created (sorting first).
  keys.splice(0, 1);
  keys.unshift(key('K0', 0));
  const second = await rest(client, token!, 5);
  assert.ok(second.includes('K3'), 'K3 existed throughout: it is not skipped (a position would skip it)');
  assert.deepEqual(second.filter((id) => id !== 'K0'), ['K3', 'K4', 'K5']);
  assert.ok(!second.includes('K2'), 'K2 is not yielded twice');
});

test('a cut resumed with a smaller page size still skips every id already yielded from the cut page', async () => {
  const keys = Array.from({ length: 10 }, (_, i) => key(`K${i}`, i));
  const { client } = stubIam({ u: keys });
  let token: string | undefined;
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 10, MaxItems: 6 } })) token = p.NextToken;
  assert.deepEqual(await rest(client, token!, 2), ['K6', 'K7', 'K8', 'K9']);
});

test('a run stopped after any page of a resumed cut resumes from that page\'s NextToken without repeating or losing a key', async () => {
  const keys = Array.from({ length: 10 }, (_, i) => key(`K${i}`, i));
  const { client } = stubIam({ u: keys });
  for (let cut = 1; cut < keys.length; cut++) {
    let token: string | undefined;
    for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 10, MaxItems: cut } })) token = p.NextToken;
    // Resumed with a smaller page size, the cut's ids spread over several pages: each page's token must carry those not met yet.
    for (let pageSize = 1; pageSize <= 3; pageSize++) {
      const label = `cut ${cut} PageSize ${pageSize}`;
      const seen: string[] = [];
      let at = token;
      for (let stops = 0; at !== undefined; stops++) {
        assert.ok(stops <= keys.length, `${label}: does not terminate`);
        const pages = paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: pageSize, StartingToken: at } });
        const next = await pages.next();
        await pages.return(undefined); // the run stops here; its checkpoint holds this page's token
        assert.ok(!next.done, `${label}: a resumed iteration yields at least one page`);
        const first = next.value;
        seen.push(...first.AccessKeyMetadata.map((k) => k.AccessKeyId!));
        at = first.NextToken;
      }
      assert.deepEqual(seen, keys.slice(cut).map((k) => k.AccessKeyId), label);
    }
  }
});

test('under random changes between iterations, every key present throughout is yielded exactly once and no key twice', async () => {
  for (let seed = 1; seed <= 60; seed++) {
    const random = mulberry32(seed);
    let clock = 100;
    const keys = Array.from({ length: 1 + Math.floor(random() * 12) }, (_, i) => key(`S${seed}K${i}`, i));
    const ever = new Set(keys.map((k) => k.AccessKeyId!));
    const deleted = new Set<string>();
    const { client } = stubIam({ u: keys });
    const seen: string[] = [];
    let token: string | undefined;
    const pageSize = 1 + Math.floor(random() * 4);
    const maxItems = 1 + Math.floor(random() * 4);
    for (let iteration = 0; iteration === 0 || token; iteration++) {
      assert.ok(iteration < 200, `seed ${seed}: does not terminate`);
      let last: string | undefined;
      for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: pageSize, MaxItems: maxItems, ...(token ? { StartingToken: token } : {}) } })) {
        seen.push(...p.AccessKeyMetadata.map((k) => k.AccessKeyId!));
        last = p.NextToken;
      }
      token = last;
      // Churn between runs: delete a random key, add a new one at a random place in time order.
      if (random() < 0.5 && keys.length > 0) deleted.add(keys.splice(Math.floor(random() * keys.length), 1)[0]!.AccessKeyId!);
      if (random() < 0.5) {
        const fresh = key(`S${seed}N${clock}`, random() < 0.5 ? -clock : clock);
        clock++;
        keys.push(fresh);
        keys.sort((a, b) => a.CreateDate!.getTime() - b.CreateDate!.getTime() || (a.AccessKeyId! < b.AccessKeyId! ? -1 : 1));
        ever.add(fresh.AccessKeyId!);
      }
    }
    const label = `seed ${seed} PageSize ${pageSize} MaxItems ${maxItems}`;
    assert.equal(new Set(seen).size, seen.length, `${label}: a key yielded twice: ${seen.join(',')}`);
    for (const id of ever) {
      const throughout = !id.includes('N') && !deleted.has(id);
      if (throughout) assert.ok(seen.includes(id), `${label}: ${id} existed throughout and was not yielded`);
    }
    for (const id of seen) assert.ok(ever.has(id), `${label}: ${id} never existed`);
  }
});

/** A client whose every ListUsers / ListAccessKeys answer is `answer(request number)`. */
function scripted(answer: (n: number, input: Record<string, unknown>) => object): { client: IAMClient; inputs: Record<string, unknown>[] } {
  const client = new IAMClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const inputs: Record<string, unknown>[] = [];
  client.middlewareStack.add(
    () => async (args) => {
      inputs.push({ ...(args.input as object) });
      return { output: { $metadata: {}, ...answer(inputs.length - 1, args.input as Record<string, unknown>) } } as never;
    },
    { step: 'initialize', name: 'scripted' },
  );
  return { client, inputs };
}

test('an iteration that reaches MaxItems at the end of a server page stops without requesting another page', async () => {
  const { client, requests } = stubIam({ u: keysOf(6) });
  const pages = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 2, MaxItems: 4 } })) pages.push(p);
  assert.equal(requests.length, 2, 'two pages of two: no third call');
  assert.deepEqual(pages.map((p) => p.AccessKeyMetadata.length), [2, 2]);
  assert.equal(pages[1]!.IsTruncated, true);
  assert.deepEqual(decodeToken(pages[1]!.NextToken!).skip, [], 'resumes at the next server page, skipping nothing');
});

test('the last page carries no NextToken at all, as boto3 pages do', async () => {
  const { client } = stubIam({ u: keysOf(3) });
  const pages = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 2 } })) pages.push(p);
  assert.deepEqual(pages.map((p) => Object.keys(p).sort()), [['AccessKeyMetadata', 'IsTruncated', 'NextToken'], ['AccessKeyMetadata', 'IsTruncated']]);
  assert.equal(pages[1]!.IsTruncated, false);
});

test('a user with no keys is one empty, final page', async () => {
  const { client, requests } = stubIam({ u: [] });
  const pages = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u' })) pages.push(p);
  assert.deepEqual(pages, [{ AccessKeyMetadata: [], IsTruncated: false }]);
  assert.equal(requests.length, 1);
});

test('a page without its item list counts as empty (users and keys)', async () => {
  const users = scripted(() => ({ IsTruncated: false }));
  const userPages = [];
  for await (const p of paginateUsers(users.client, {})) userPages.push(p);
  assert.deepEqual(userPages, [{ Users: [], IsTruncated: false }]);
  const keys = scripted(() => ({ IsTruncated: false }));
  const keyPages = [];
  for await (const p of paginateAccessKeys(keys.client, { UserName: 'u' })) keyPages.push(p);
  assert.deepEqual(keyPages, [{ AccessKeyMetadata: [], IsTruncated: false }]);
});

test('a server that answers the same Marker again does not make either paginator loop forever', async () => {
  const users = scripted((n) => ({ Users: [{ UserName: `user${n}`, UserId: `AIDA${n}`, Arn: 'arn', Path: '/', CreateDate: new Date(0) }], IsTruncated: true, Marker: 'same' }));
  const keys = scripted((n) => ({ AccessKeyMetadata: [key(`K${n}`, n)], IsTruncated: true, Marker: 'same' }));
  for (const [name, { pages, inputs }] of [
    ['ListUsers', { pages: paginateUsers(users.client, {}), inputs: users.inputs }],
    ['ListAccessKeys', { pages: paginateAccessKeys(keys.client, { UserName: 'u' }), inputs: keys.inputs }],
  ] as const) {
    let count = 0;
    for await (const _ of pages) {
      void _;
      if (++count > 10) break;
    }
    assert.ok(count <= 2, `${name}: ${count} pages`);
    assert.ok(inputs.length <= 2, `${name}: ${inputs.length} requests`);
  }
});

test('after a repeated Marker the last page carries no NextToken, so a caller that follows NextToken stops too', async () => {
  const { client, inputs } = scripted((n) => ({ AccessKeyMetadata: [key(`K${n}`, n)], IsTruncated: true, Marker: 'same' }));
  const seen: string[] = [];
  let token: string | undefined;
  let iterations = 0;
  do {
    assert.ok(++iterations <= 3, `still paging after ${iterations - 1} iterations: ${seen.join(',')}`);
    let last: { IsTruncated: boolean; NextToken?: string } | undefined;
    for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: token ? { StartingToken: token } : {} })) {
      seen.push(...p.AccessKeyMetadata.map((k) => k.AccessKeyId!));
      last = p;
      if (seen.length > 10) break; // a paginator that never stops fails below instead of hanging
    }
    assert.ok(seen.length <= 10, `one iteration kept paging: ${seen.join(',')}`);
    assert.equal(last?.IsTruncated, last?.NextToken !== undefined, 'IsTruncated agrees with NextToken');
    token = last?.NextToken;
  } while (token);
  assert.deepEqual(seen, ['K0', 'K1'], 'the page answered for the repeated Marker is the last one');
  assert.equal(inputs.length, 2);
});

test('ListUsers is sent the PathPrefix and the PageSize; ListAccessKeys the UserName', async () => {
  const users = [
    { UserName: 'a', UserId: 'AIDA1', Arn: 'arn:aws:iam::123456789012:user/eng/a', Path: '/eng/', CreateDate: new Date(0) },
    { UserName: 'b', UserId: 'AIDA2', Arn: 'arn:aws:iam::123456789012:user/b', Path: '/', CreateDate: new Date(0) },
    { UserName: 'c', UserId: 'AIDA3', Arn: 'arn:aws:iam::123456789012:user/eng/c', Path: '/eng/', CreateDate: new Date(0) },
  ];
  const { client, requests } = stubIam({ a: keysOf(1) }, users);
  const seen: string[] = [];
  for await (const p of paginateUsers(client, { PathPrefix: '/eng/', PaginationConfig: { PageSize: 1 } })) seen.push(...p.Users.map((u) => u.UserName!));
  assert.deepEqual(seen, ['a', 'c']);
  assert.ok(requests.every((r) => r.PathPrefix === '/eng/' && r.MaxItems === 1), JSON.stringify(requests));
  requests.length = 0;
  for await (const _ of paginateUsers(client, {})) void _;
  assert.deepEqual(requests, [{ action: 'ListUsers' }], 'no PathPrefix and no page size unless given');
  requests.length = 0;
  const keys = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'a' })) keys.push(...p.AccessKeyMetadata);
  assert.equal(keys.length, 1);
  assert.deepEqual(requests, [{ action: 'ListAccessKeys', UserName: 'a' }]);
});

test('PageSize 1 and 1000 are allowed, and MaxItems must be a whole number', async () => {
  const { client } = stubIam({ u: keysOf(2) });
  for (const cfg of [{ PageSize: 1 }, { PageSize: 1000 }, { MaxItems: 1 }]) {
    for await (const _ of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: cfg })) void _;
  }
  for (const cfg of [{ MaxItems: 1.5 }, { MaxItems: -1 }, { PageSize: -5 }]) {
    await assert.rejects(async () => {
      for await (const _ of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: cfg })) void _;
    }, RangeError);
  }
});

test('an invalid StartingToken is named in the error (its first 40 characters)', async () => {
  const { client } = stubIam({ u: keysOf(1) });
  const bad = 'x'.repeat(50);
  await assert.rejects(
    async () => {
      for await (const _ of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { StartingToken: bad } })) void _;
    },
    (err: unknown) => err instanceof ExportError && err.message.includes(`"${'x'.repeat(40)}"`) && !err.message.includes('x'.repeat(41)),
  );
});

test('a first page asked before the iteration is used instead of asking it again; the rest follows from its Marker, with MaxItems and tokens as without it', async () => {
  const users = Array.from({ length: 7 }, (_, i) => ({ UserName: `user${i}`, UserId: `AIDA${i}`, Arn: `arn:aws:iam::123456789012:user/user${i}`, Path: '/', CreateDate: new Date(0) }));
  const { client, requests } = stubIam({}, users);
  const first = client.send(new ListUsersCommand({ MaxItems: 3 }));
  await first;
  const asked = requests.length;
  const pages = [];
  for await (const p of paginateUsers(client, { PaginationConfig: { PageSize: 3, MaxItems: 5 } }, {}, first)) pages.push(p);
  assert.deepEqual(pages.map((p) => p.Users.map((u) => u.UserName)), [['user0', 'user1', 'user2'], ['user3', 'user4']]);
  assert.deepEqual(requests.slice(asked).map((r) => r.Marker), ['user2'], 'only the pages after the first were asked');
  const rest = [];
  for await (const p of paginateUsers(client, { PaginationConfig: { PageSize: 3, StartingToken: pages[1]!.NextToken! } })) rest.push(...p.Users.map((u) => u.UserName));
  assert.deepEqual(rest, ['user5', 'user6']);
});
