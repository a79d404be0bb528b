import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AccessKeyMetadata } from '@aws-sdk/client-iam';
import { decodeToken, encodeToken, paginateAccessKeys, paginateUsers } from '../pipeline/source/paginate.ts';
import { ExportError } from '../pipeline/errors.ts';
import { stubIam } from './support/stub-iam.ts';

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
  assert.deepEqual(decodeToken(first[0]!.NextToken!), { marker: undefined, skip: 2 });
  const rest = [];
  for await (const p of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { PageSize: 3, StartingToken: first[0]!.NextToken! } })) rest.push(...p.AccessKeyMetadata);
  assert.deepEqual(rest.map((k) => k.AccessKeyId), ['AKIA5x2', 'AKIA5x3', 'AKIA5x4']);
  assert.ok(requests.every((r) => r.MaxItems === 3), 'PageSize is the MaxItems of every request');
});

test('a malformed StartingToken is a PAGINATION_TOKEN_INVALID error before any call', async () => {
  const { client, requests } = stubIam({ u: keysOf(2) });
  for (const bad of ['garbage', 'ike1.!!!', `ike1.${Buffer.from('{"m":1,"s":0}').toString('base64url')}`, `ike1.${Buffer.from('{"m":null,"s":-1}').toString('base64url')}`]) {
    await assert.rejects(
      async () => {
        for await (const _ of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: { StartingToken: bad } })) void _;
      },
      (err: unknown) => err instanceof ExportError && err.code === 'PAGINATION_TOKEN_INVALID',
    );
  }
  assert.equal(requests.length, 0);
});

test('PageSize outside 1..1000 and a non-positive MaxItems are rejected', async () => {
  const { client } = stubIam({ u: keysOf(1) });
  for (const cfg of [{ PageSize: 0 }, { PageSize: 1001 }, { MaxItems: 0 }, { PageSize: 1.5 }]) {
    await assert.rejects(async () => {
      for await (const _ of paginateAccessKeys(client, { UserName: 'u', PaginationConfig: cfg })) void _;
    }, RangeError);
  }
});

test('users are paged with the same token semantics', async () => {
  const users = Array.from({ length: 7 }, (_, i) => ({ UserName: `user${i}`, UserId: `AIDA${i}`, Arn: `arn:aws:iam::123456789012:user/user${i}`, Path: '/', CreateDate: new Date(0) }));
  const { client } = stubIam({}, users);
  const seen: string[] = [];
  let token: string | undefined;
  do {
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
  for (const pos of [{ marker: undefined, skip: 0 }, { marker: 'abc/=+', skip: 7 }]) assert.deepEqual(decodeToken(encodeToken(pos)), pos);
});
