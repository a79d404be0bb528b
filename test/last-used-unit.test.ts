import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GenerateCredentialReportCommand, GetCredentialReportCommand, IAMClient, type GetCredentialReportCommandInput, type GetCredentialReportCommandOutput } from '@aws-sdk/client-iam';
import type { DeserializeMiddleware } from '@smithy/types';
import { ExportError } from '../pipeline/errors.ts';
import type { AccessKeyRecord } from '../pipeline/schema.ts';
import { LastUsedResolver, LookupHalt } from '../pipeline/source/lastUsed.ts';
import { fetchCredentialReport, ReportIndex, withContentAside, type ContentSink } from '../pipeline/source/report.ts';
import { enrichLastUsedStage, withLastUse } from '../pipeline/stages/enrichLastUsed.ts';
import { withFake, withTemp } from './support/scope.ts';
import { AccountReach, uploadSink } from '../pipeline/source/reach.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import type { Config } from '../pipeline/config.ts';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { stringify as stringifyCsv } from 'csv-stringify/sync';

const HEADER =
  'user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated';

const REPORT = {
  generatedTime: '2026-11-28T10:00:00.000Z',
  csv: [
    HEADER,
    '<root_account>,arn:aws:iam::123456789012:root,2015-01-01T00:00:00+00:00,not_supported,no_information,not_supported,not_supported,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A',
    'alice,arn:aws:iam::123456789012:user/alice,2015-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2020-01-01T00:00:00+00:00,2026-11-01T12:00:00+00:00,eu-west-1,s3,true,2021-06-01T00:00:07+00:00,N/A,N/A,N/A,false,N/A,false,N/A',
    'bob,arn:aws:iam::123456789012:user/bob,2015-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2022-02-02T02:02:02+00:00,2026-10-01T00:00:00+00:00,not_supported,not_supported,true,2022-02-02T02:02:02+00:00,N/A,N/A,N/A,false,N/A,false,N/A',
    '"carol,ops","arn:aws:iam::123456789012:user/carol,ops",2015-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2023-03-03T03:03:03+00:00,no_information,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A',
  ].join('\n'),
};

/** Content sinks, one per attempt, that keep the pieces each was given and how it ended. */
function keeping() {
  const attempts: { pieces: Buffer[]; ended: 'no' | 'end' | 'abort' }[] = [];
  const open = (): ContentSink<Buffer> => {
    const attempt: (typeof attempts)[number] = { pieces: [], ended: 'no' };
    attempts.push(attempt);
    return {
      write: async (chunk) => {
        attempt.pieces.push(chunk);
      },
      end: async () => {
        attempt.ended = 'end';
        return Buffer.concat(attempt.pieces);
      },
      abort: async () => {
        attempt.ended = 'abort';
      },
    };
  };
  return { attempts, open };
}

function rec(user: string, created: string, arn = `arn:aws:iam::123456789012:user/${user}`): AccessKeyRecord {
  return {
    snapshot_time: new Date('2026-11-28T11:00:00.000Z'),
    account_id: '123456789012',
    user_name: user,
    user_id: `AIDA${user}`,
    access_key_id: `AKIA${user}${created}`,
    status: 'Active',
    create_date: new Date(created),
    key_age_days: 0,
    last_used_date: null,
    last_used_service: null,
    last_used_region: null,
    user_arn: arn,
    user_path: '/',
    user_create_date: new Date('2015-01-01T00:00:00.000Z'),
    days_since_last_used: null,
  };
}

test('the report attributes a key by its user and its CreateDate to the second, and reads N/A, no_information and not_supported as null', async () => {
  const index = await ReportIndex.build(REPORT.generatedTime, REPORT.csv);
  assert.deepEqual(index.lookup(rec('alice', '2020-01-01T00:00:00.999Z')), { hit: { date: new Date('2026-11-01T12:00:00.000Z'), service: 's3', region: 'eu-west-1' } });
  assert.deepEqual(index.lookup(rec('alice', '2021-06-01T00:00:07.250Z')), { hit: { date: null, service: null, region: null } }, 'never used');
  assert.deepEqual(index.lookup(rec('carol,ops', '2023-03-03T03:03:03.000Z', 'arn:aws:iam::123456789012:user/carol,ops')), { hit: { date: null, service: null, region: null } }, 'a quoted name with a comma');
});

test('a key the report cannot attribute unambiguously is a miss, with the reason', async () => {
  const index = await ReportIndex.build(REPORT.generatedTime, REPORT.csv);
  assert.deepEqual(index.lookup(rec('bob', '2022-02-02T02:02:02.000Z')), { miss: 'ambiguous-slot' }, 'two keys created in the same second');
  assert.deepEqual(index.lookup(rec('alice', '2026-11-28T10:30:00.000Z')), { miss: 'created-after-report' });
  assert.deepEqual(index.lookup(rec('dave', '2020-01-01T00:00:00.000Z')), { miss: 'user-not-in-report' });
  assert.deepEqual(index.lookup(rec('alice', '2020-01-01T00:00:00.000Z', 'arn:aws:iam::123456789012:user/eng/alice')), { miss: 'user-replaced' });
  assert.deepEqual(index.lookup(rec('alice', '2019-05-05T00:00:00.000Z')), { miss: 'no-matching-slot' });
});

test('the report is read by its column names: columns in another order, and one IAM might add, read the same', async () => {
  const rows = parseCsv(REPORT.csv) as string[][];
  const order = rows[0]!.map((_, i) => i).reverse();
  const moved = stringifyCsv(rows.map((r, n) => [...order.map((i) => r[i]!), n === 0 ? 'access_key_3_last_rotated' : '2026-01-01T00:00:00+00:00']));
  const [index, reordered] = await Promise.all([ReportIndex.build(REPORT.generatedTime, REPORT.csv), ReportIndex.build(REPORT.generatedTime, moved)]);
  for (const [user, created] of [['alice', '2020-01-01T00:00:00.999Z'], ['alice', '2021-06-01T00:00:07.000Z'], ['bob', '2022-02-02T02:02:02.000Z'], ['carol,ops', '2023-03-03T03:03:03.000Z'], ['alice', '2026-11-28T10:30:00.000Z']] as const) {
    const r = rec(user, created, `arn:aws:iam::123456789012:user/${user}`);
    assert.deepEqual(reordered.lookup(r), index.lookup(r), `${user} ${created}`);
  }
  assert.deepEqual(reordered.lookup(rec('alice', '2020-01-01T00:00:00.000Z')), { hit: { date: new Date('2026-11-01T12:00:00.000Z'), service: 's3', region: 'eu-west-1' } });
  assert.deepEqual(reordered.generatedTime, index.generatedTime);
});

test('the index keeps an ARN that is not the account prefix + path + user name whole, and matches ARNs exactly either way', async () => {
  const row = (name: string, arn: string) => `"${name}","${arn}",2015-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2020-01-01T00:00:00+00:00,2026-11-01T12:00:00+00:00,eu-west-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A`;
  const csv = [
    HEADER,
    row('alice', 'arn:aws:iam::123456789012:user/alice'),
    row('eve', 'arn:aws:iam::210987654321:user/eve'), // another account's prefix
    row('bob', 'arn:aws:iam::123456789012:user/eng/jimbob'), // the name's letters end the path too
    row('dan', 'arn:aws:iam::123456789012:user/a/b/dan'),
  ].join('\n');
  const index = await ReportIndex.build(REPORT.generatedTime, csv);
  const hit = { hit: { date: new Date('2026-11-01T12:00:00.000Z'), service: 's3', region: 'eu-west-1' } };
  const at = '2020-01-01T00:00:00.000Z';
  assert.deepEqual(index.lookup(rec('eve', at, 'arn:aws:iam::210987654321:user/eve')), hit);
  assert.deepEqual(index.lookup(rec('eve', at)), { miss: 'user-replaced' });
  assert.deepEqual(index.lookup(rec('bob', at, 'arn:aws:iam::123456789012:user/eng/jimbob')), hit);
  assert.deepEqual(index.lookup(rec('bob', at, 'arn:aws:iam::123456789012:user/eng/jim/bob')), { miss: 'user-replaced' });
  assert.deepEqual(index.lookup(rec('dan', at, 'arn:aws:iam::123456789012:user/a/b/dan')), hit);
  assert.deepEqual(index.lookup(rec('dan', at)), { miss: 'user-replaced' });
});

test("the report's time is IAM's GeneratedTime unless a past moment of it is later; a future expiry or a name that reads as a year does not move it", async () => {
  // A password policy's next expiry is in the future, and `new Date('12345')` is the year 12345.
  const rows = [
    HEADER,
    '12345,arn:aws:iam::123456789012:user/12345,2015-01-01T00:00:00+00:00,true,2026-11-27T09:00:00+00:00,2026-10-01T00:00:00+00:00,2027-01-01T00:00:00+00:00,false,true,2020-01-01T00:00:00+00:00,2026-11-02T12:00:00+00:00,eu-west-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A',
  ];
  const index = await ReportIndex.build(REPORT.generatedTime, rows.join('\n'));
  assert.deepEqual(index.generatedTime, new Date(REPORT.generatedTime));
  assert.deepEqual(index.lookup(rec('12345', '2020-01-01T00:00:00.000Z')), { hit: { date: new Date('2026-11-02T12:00:00.000Z'), service: 's3', region: 'eu-west-1' } });
  // moto answers a fixed 2015 GeneratedTime: the latest past moment the report mentions is the lower bound.
  for (const [column, value] of [[4, '2026-11-28T10:30:00+00:00'], [10, '2026-11-28T10:31:00+00:00'], [19, '2026-11-28T10:32:00+00:00']] as const) {
    const cells = rows[1]!.split(',');
    cells[column] = value;
    const lifted = await ReportIndex.build('2015-01-01T00:00:00.000Z', [HEADER, cells.join(',')].join('\n'));
    assert.deepEqual(lifted.generatedTime, new Date(value), HEADER.split(',')[column]);
  }
});

test('days_since_last_used is whole days from the last use to the snapshot, null when never used', () => {
  const r = rec('alice', '2020-01-01T00:00:00.000Z');
  assert.equal(withLastUse(r, { date: new Date('2026-11-26T11:00:00.001Z'), service: 's3', region: 'us-east-1' }).days_since_last_used, 1);
  assert.equal(withLastUse(r, { date: new Date('2026-11-28T12:00:00.000Z'), service: 's3', region: 'us-east-1' }).days_since_last_used, 0, 'used after the snapshot started: 0, not negative');
  assert.equal(withLastUse(r, null).days_since_last_used, null);
});

/** An IAMClient answering GetAccessKeyLastUsed from a function, in process. */
function stubClient(answer: (keyId: string) => unknown): IAMClient {
  const client = new IAMClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 });
  client.middlewareStack.add(
    () => async (args) => {
      const result = answer((args.input as { AccessKeyId: string }).AccessKeyId);
      if (result instanceof Error) throw result;
      return { output: { ...(result as object), $metadata: {} } } as never;
    },
    { step: 'initialize', name: 'stub' },
  );
  return client;
}

const awsError = (name: string, status: number) => Object.assign(new Error(name), { name, $fault: 'client', $metadata: { httpStatusCode: status } });

function resolver(client: IAMClient, events: string[]) {
  return new LastUsedResolver({
    mode: 'api',
    report: undefined,
    client,
    concurrency: 4,
    signal: new AbortController().signal,
    site: { service: 'IAM', endpoint: 'http://stub' },
    onFatal: (e) => events.push(`fatal ${e.code} ${e.message}`),
    onThrottled: () => events.push('throttled'),
  });
}

test('the API gives date, service and region; N/A is null; a key deleted meanwhile keeps its row without a last use', async () => {
  const events: string[] = [];
  const r = resolver(
    stubClient((id) => (id.includes('gone') ? awsError('NoSuchEntity', 404) : { AccessKeyLastUsed: id.includes('never') ? { ServiceName: 'N/A', Region: 'N/A' } : { LastUsedDate: new Date('2026-01-01T00:00:00Z'), ServiceName: 'sts', Region: 'eu-west-2' } })),
    events,
  );
  assert.deepEqual(await r.resolve(rec('used', '2020-01-01T00:00:00Z')), { lastUse: { date: new Date('2026-01-01T00:00:00Z'), service: 'sts', region: 'eu-west-2' }, source: 'api' });
  assert.deepEqual(await r.resolve(rec('never', '2020-01-01T00:00:00Z')), { lastUse: { date: null, service: null, region: null }, source: 'api' });
  assert.deepEqual(await r.resolve(rec('gone', '2020-01-01T00:00:00Z')), { lastUse: null, source: 'vanished' });
  assert.deepEqual(events, []);
});

test('lookups denied for every one of the first 20 keys stop the run, naming the permission and --last-used off; one denied key among answered ones does not', async () => {
  const events: string[] = [];
  const all = resolver(stubClient(() => awsError('AccessDenied', 403)), events);
  const results = await Promise.allSettled(Array.from({ length: 25 }, (_, i) => all.resolve(rec(`u${i}`, '2020-01-01T00:00:00Z'))));
  assert.ok(results.some((x) => x.status === 'rejected' && x.reason instanceof LookupHalt));
  assert.equal(events.length, 1);
  assert.match(events[0]!, /^fatal SOURCE_DENIED .*iam:GetAccessKeyLastUsed, or run with --last-used off/);

  const some: string[] = [];
  const mixed = resolver(stubClient((id) => (id.includes('u3') ? awsError('AccessDenied', 403) : { AccessKeyLastUsed: { ServiceName: 'N/A', Region: 'N/A' } })), some);
  for (let i = 0; i < 25; i++) await mixed.resolve(rec(`u${i}`, '2020-01-01T00:00:00Z'));
  assert.deepEqual(some, []);
  void ExportError;
});

test('throttling that outlived the retries halts the lookups and stops the run resumably', async () => {
  const events: string[] = [];
  const r = resolver(stubClient(() => awsError('Throttling', 400)), events);
  await assert.rejects(r.resolve(rec('u', '2020-01-01T00:00:00Z')), LookupHalt);
  assert.deepEqual(events, ['throttled']);
});

test('GetCredentialReport with its Content kept from the SDK parser: the same report, ReportFormat and GeneratedTime; an error answer still the SDK\'s', async () => {
  await withFake({ users: 400, seed: 77, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    const client = new IAMClient({ endpoint: fake.url, region: 'us-east-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' }, maxAttempts: 1 });
    try {
      await client.send(new GenerateCredentialReportCommand({}));
      const plain = await client.send(new GetCredentialReportCommand({}));
      // What the SDK's deserializer is given: a probe between it and the middleware.
      const sinks = keeping();
      let csv: Buffer | undefined;
      const command = withContentAside(new GetCredentialReportCommand({}), sinks.open, (content) => {
        csv = content;
      });
      let parsed = '';
      const probe: DeserializeMiddleware<GetCredentialReportCommandInput, GetCredentialReportCommandOutput> = (next) => async (args) => {
        const result = await next(args);
        parsed = Buffer.from((result.response as { body: Uint8Array }).body).toString('utf8');
        return result;
      };
      command.middlewareStack.addRelativeTo(probe, { relation: 'before', toMiddleware: 'iamKeyExportContentAside', name: 'probe' });
      const aside = await client.send(command);
      assert.match(parsed, /<ReportFormat>text\/csv<\/ReportFormat>/, 'the SDK parses the rest of the answer');
      assert.ok(!parsed.includes('<Content>'), 'the SDK parser never sees the report\'s Content');
      assert.ok(plain.Content && plain.Content.length > 20_000, 'a report of some size');
      assert.equal(aside.Content?.length, 0, 'the Content went aside');
      assert.equal(sinks.attempts.length, 1);
      assert.ok(sinks.attempts[0]!.pieces.length > 1, `decoded as the answer streamed in: ${sinks.attempts[0]!.pieces.length} piece(s)`);
      assert.equal(csv?.toString('utf8'), Buffer.from(plain.Content!).toString('utf8'), 'the same CSV');
      assert.equal(aside.ReportFormat, plain.ReportFormat);
      assert.equal(aside.GeneratedTime?.toISOString(), plain.GeneratedTime?.toISOString());
      // The whole fetch, as a run does it, gives that CSV.
      const fetched = await fetchCredentialReport(client, new AbortController().signal, { service: 'IAM', endpoint: fake.url }, keeping().open);
      assert.ok('report' in fetched, 'fetched');
      assert.equal(fetched.report.content.toString('utf8'), Buffer.from(plain.Content!).toString('utf8'));
      fake.configure({ reportDenied: true });
      await assert.rejects(
        client.send(
          withContentAside(
            new GetCredentialReportCommand({}),
            () => assert.fail('no sink for an error'),
            () => assert.fail('no Content in an error'),
          ),
        ),
        (err: Error & { $fault?: string }) => err.name === 'AccessDenied' && err.$fault === 'client',
      );
    } finally {
      client.destroy();
    }
  });
});

test('the report\'s Content is decoded as the answer streams in, whatever the chunk boundaries and line breaks of its base64; an answer cut inside it is no report', async () => {
  const csv = Buffer.from(REPORT.csv.repeat(40));
  const b64 = csv.toString('base64').replace(/.{76}/g, '$&\n  ');
  const answer = Buffer.from(
    `<GetCredentialReportResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetCredentialReportResult><Content>${b64}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>2026-11-28T10:00:00Z</GeneratedTime></GetCredentialReportResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCredentialReportResponse>`,
  );
  const send = async (bytes: Buffer, size: number) => {
    const pieces: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.subarray(at, at + size));
    const client = new IAMClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' },
      maxAttempts: 1,
      requestHandler: { handle: async () => ({ response: { statusCode: 200, headers: { 'content-type': 'text/xml' }, body: Readable.from(pieces) } }) },
    });
    const sinks = keeping();
    let csv: Buffer = Buffer.alloc(0);
    const out = await client.send(
      withContentAside(new GetCredentialReportCommand({}), sinks.open, (content) => {
        csv = content;
      }),
    );
    return { out, csv };
  };
  for (const size of [1, 2, 3, 5, 9, 10, 11, 64, 4096, answer.length]) {
    const { out, csv: got } = await send(answer, size);
    assert.ok(got.equals(csv), `pieces of ${size} bytes: the same CSV`);
    assert.equal(out.GeneratedTime?.toISOString(), '2026-11-28T10:00:00.000Z', `pieces of ${size}`);
    assert.equal(out.ReportFormat, 'text/csv');
  }
  const cut = answer.subarray(0, answer.indexOf('</Content>') - 5);
  await assert.rejects(send(cut, 100), (err: Error) => err.name === 'ReportNotPresent');
});

test('each attempt at the report has a sink of its own: one cut inside the Content is aborted and the retry gives the CSV once; the answer is read at the pace of the sink', async () => {
  const csv = Buffer.from(REPORT.csv.repeat(400));
  const answer = Buffer.from(
    `<GetCredentialReportResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetCredentialReportResult><Content>${csv.toString('base64')}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>2026-11-28T10:00:00Z</GeneratedTime></GetCredentialReportResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCredentialReportResponse>`,
  );
  const PIECE = 4096;
  let pulled = 0;
  let written = 0;
  let lag = 0;
  let attempt = 0;
  async function* body(cutAt: number | undefined) {
    for (let at = 0; at < answer.length; at += PIECE) {
      if (cutAt !== undefined && at >= cutAt) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      pulled += Math.min(PIECE, answer.length - at);
      // Decoded bytes the answer has given beyond what the sink took.
      lag = Math.max(lag, (pulled * 3) / 4 - written);
      yield answer.subarray(at, at + PIECE);
    }
  }
  const client = new IAMClient({
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' },
    maxAttempts: 2,
    requestHandler: {
      handle: async (request: { body?: unknown }) => {
        if (String(request.body).includes('Action=GenerateCredentialReport')) {
          const generated = '<GenerateCredentialReportResponse><GenerateCredentialReportResult><State>COMPLETE</State></GenerateCredentialReportResult></GenerateCredentialReportResponse>';
          return { response: { statusCode: 200, headers: { 'content-type': 'text/xml' }, body: Readable.from([Buffer.from(generated)]) } };
        }
        attempt++;
        pulled = 0;
        written = 0;
        return { response: { statusCode: 200, headers: { 'content-type': 'text/xml' }, body: Readable.from(body(attempt === 1 ? answer.length / 2 : undefined)) } };
      },
    },
  });
  const sinks = keeping();
  const slow = (): ContentSink<Buffer> => {
    const inner = sinks.open();
    return {
      write: async (chunk) => {
        await new Promise((resolve) => setImmediate(resolve));
        written += chunk.length;
        await inner.write(chunk);
      },
      end: () => inner.end(),
      abort: (reason) => inner.abort(reason),
    };
  };
  const fetched = await fetchCredentialReport(client, new AbortController().signal, { service: 'IAM', endpoint: 'x' }, slow, 5_000);
  assert.ok('report' in fetched);
  assert.equal(attempt, 2, 'the cut answer was tried again');
  assert.deepEqual(
    sinks.attempts.map((a) => a.ended),
    ['abort', 'end'],
    'the cut attempt\'s sink was aborted, the retry\'s ended',
  );
  assert.ok(fetched.report.content.equals(csv), 'the CSV once, not the cut part and then the whole');
  assert.ok(lag < 100_000, `the answer waited for the sink: at most ${Math.round(lag)} decoded bytes ahead of it, of ${csv.length}`);
});

test('the report streams into the staging: a whole CSV is saved with its size and sha256; an aborted one leaves nothing; a store that fails is an error, not a wait', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const csv = Buffer.from(REPORT.csv.repeat(2000));
    const sink = uploadSink(store, 'st/reports/self.csv');
    for (let at = 0; at < csv.length; at += 50_000) await sink.write(csv.subarray(at, at + 50_000));
    const saved = await sink.end();
    assert.deepEqual(saved, { bytes: csv.length, sha256: createHash('sha256').update(csv).digest('hex') });
    assert.ok((await store.read('st/reports/self.csv'))!.body.equals(csv));

    const cut = uploadSink(store, 'st/reports/cut.csv');
    await cut.write(csv.subarray(0, 300_000));
    await cut.abort(new Error('socket hang up'));
    assert.equal(await store.exists('st/reports/cut.csv'), false);
    assert.deepEqual((await readdir(join(dir, 'st/reports'))).sort(), ['self.csv'], 'no temporary file left');

    const full = Object.assign(new LocalStore(dir), {
      upload: async () => {
        throw new ExportError('OUTPUT_IO', 'disk full');
      },
    });
    const failing = uploadSink(full, 'st/reports/full.csv');
    await assert.rejects(
      (async () => {
        for (let at = 0; at < csv.length; at += 50_000) await failing.write(csv.subarray(at, at + 50_000));
      })(),
      (err: Error) => err.message === 'disk full',
    );
  });
});

/** A resolver whose lookups wait until the test answers them (by user name), counting the answered ones. */
function waitingResolver() {
  const answers = new Map<string, () => void>();
  const count = { resolved: 0 };
  const resolver = {
    resolve: (record: AccessKeyRecord) =>
      new Promise((done) =>
        answers.set(record.user_name, () => {
          count.resolved++;
          done({ lastUse: null, source: 'api' });
        }),
      ),
  } as unknown as LastUsedResolver;
  return { resolver, answers, count };
}

test('an account is released (its resolver, report and client) once every record of it is enriched, never before', async () => {
  const { resolver, answers, count } = waitingResolver();
  const ended: string[] = [];
  const stage = enrichLastUsedStage(() => resolver, 4, (account) => ended.push(`${account} after ${count.resolved} lookups`));
  const out: unknown[] = [];
  stage.on('data', (batch: unknown) => out.push(batch));
  const tick = () => new Promise((r) => setImmediate(r));
  stage.write([{ type: 'RECORD', record: rec('a', '2020-01-01T00:00:00Z') }]);
  stage.write([{ type: 'RECORD', record: rec('b', '2020-01-01T00:00:00Z') }, { type: 'STATE', state: { kind: 'account-done', account: '123456789012' } }]);
  stage.write([{ type: 'STATE', state: { kind: 'account-failed', account: '210987654321', code: 'AccessDenied' } }]);
  await tick();
  answers.get('b')!();
  await tick();
  assert.deepEqual(ended, [], 'the batch with the end is done, but a record before it is still being looked up');
  answers.get('a')!();
  await tick();
  await tick();
  assert.deepEqual(ended, ['123456789012 after 2 lookups', '210987654321 after 2 lookups']);
  assert.equal(out.length, 3);
});

test('a user forgotten by the report index is a miss from then on (its keys go to the API), and only that user', async () => {
  const index = await ReportIndex.build(REPORT.generatedTime, REPORT.csv);
  assert.equal(index.size, 3, 'alice, bob and carol,ops; not the root');
  index.forget('alice');
  index.forget('nobody');
  assert.equal(index.size, 2);
  assert.deepEqual(index.lookup(rec('alice', '2020-01-01T00:00:00.000Z')), { miss: 'user-not-in-report' });
  assert.deepEqual(index.lookup(rec('carol,ops', '2023-03-03T03:03:03.000Z', 'arn:aws:iam::123456789012:user/carol,ops')), { hit: { date: null, service: null, region: null } });
  const resolver = new LastUsedResolver({ mode: 'report', report: index, client: undefined as unknown as IAMClient, concurrency: 1, signal: new AbortController().signal, site: { service: 'IAM', endpoint: 'x' }, onFatal: () => undefined, onThrottled: () => undefined });
  resolver.forget('carol,ops');
  assert.equal(index.size, 1, 'the resolver forgets through its report');
});

test('a user is forgotten once every record of it is enriched (its user-done or user-vanished decided), never before, and not when it failed', async () => {
  const { resolver, answers, count } = waitingResolver();
  const forgotten: string[] = [];
  const user = (name: string) => ({ userName: name, userId: `AIDA${name}`, accountId: '123456789012', arn: `arn:aws:iam::123456789012:user/${name}`, path: '/', createDate: null });
  const stage = enrichLastUsedStage(() => resolver, 4, () => undefined, (u) => forgotten.push(`${u.userName} after ${count.resolved} lookups`));
  stage.on('data', () => undefined);
  const tick = () => new Promise((r) => setImmediate(r));
  stage.write([{ type: 'RECORD', record: rec('a', '2020-01-01T00:00:00Z') }]);
  stage.write([{ type: 'STATE', state: { kind: 'user-done', user: user('a') } }, { type: 'STATE', state: { kind: 'user-failed', user: user('f'), code: 'AccessDenied', token: null } }]);
  stage.write([{ type: 'RECORD', record: rec('b', '2020-01-01T00:00:00Z') }, { type: 'STATE', state: { kind: 'user-vanished', user: user('b') } }]);
  await tick();
  assert.deepEqual(forgotten, [], "a's record is still being looked up");
  answers.get('b')!();
  await tick();
  assert.deepEqual(forgotten, [], 'b is looked up, but the batches before it are not decided');
  answers.get('a')!();
  await tick();
  await tick();
  assert.deepEqual(forgotten, ['a after 2 lookups', 'b after 2 lookups'], 'the failed user is kept');
});

test('an account\'s lookups wait for its report, then use it; they follow the run\'s stop, not the account\'s; a report that cannot be had leaves them to the API', async () => {
  await withFake({ users: 3, seed: 5, keysPerUser: { min: 1, max: 1 } }, async (fake) => {
    await withTemp(async (dir) => {
      const client = new IAMClient({ endpoint: fake.url, region: 'us-east-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' }, maxAttempts: 1 });
      const truth = fake.truth();
      const key = truth.keys[0]!;
      const user = truth.users.find((u) => u.userName === key.userName)!;
      const record = { ...rec(user.userName, key.createDate.toISOString(), user.arn), access_key_id: key.accessKeyId };
      /** A key the report cannot tell (created after it): looked up by the API. */
      const later = { ...record, create_date: new Date(Date.now() + 86_400_000) };
      const store = new LocalStore(dir);
      const reachOf = (staging: string, run: AbortController, events: string[]) =>
        new AccountReach({
          config: { concurrency: 2, maxAttempts: 1, role: undefined } as unknown as Config,
          store,
          staging,
          base: client,
          callerAccount: null,
          callerArn: null,
          region: 'us-east-1',
          endpoints: { iam: fake.url, iamShown: fake.url, sts: undefined, stsShown: 'x' },
          stats: { calls: {}, attempts: 0, throttles: 0 },
          mode: 'report',
          signal: run.signal,
          onFatal: (e) => events.push(`fatal ${e.code}`),
          onThrottled: () => events.push('throttled'),
          onWarning: (m) => events.push(`warning ${m}`),
        });
      const job = { ref: { id: '', name: null }, plan: undefined as never, viaRole: false };
      try {
        const events: string[] = [];
        const run = new AbortController();
        const account = new AbortController();
        const reach = reachOf('a/', run, events);
        const prepared = await reach.prepare(job, account.signal);
        const resolver = reach.resolverOf('');
        await prepared.lastUse;
        assert.equal((await (await resolver).resolve(record)).source, 'report', 'the lookups waited for the report');
        account.abort('the account failed');
        assert.equal((await (await reach.resolverOf('')).resolve(later)).source, 'api', 'a key the failed account gave is still looked up');
        run.abort('signal');
        await assert.rejects((await reach.resolverOf('')).resolve(later), LookupHalt, 'the run stopping halts them');
        assert.deepEqual(events, []);

        // The saved report record is unreadable: the fan-out is told (lastUse rejects); lookups go to the API.
        await store.write('b/reports/self.json', '{not json');
        const broken = reachOf('b/', new AbortController(), events);
        const p = await broken.prepare(job, new AbortController().signal);
        await assert.rejects(p.lastUse!, SyntaxError);
        const r = await (await broken.resolverOf('')).resolve(record);
        assert.equal(r.source, 'api');
        assert.deepEqual(events, []);
      } finally {
        client.destroy();
      }
    });
  });
});

test('indexing a big report lets the event loop turn (the users being paged meanwhile get their answers), and indexes every row', async () => {
  const row = (i: number) => `u${i},arn:aws:iam::123456789012:user/u${i},2015-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2020-01-01T00:00:00+00:00,2026-11-01T12:00:00+00:00,eu-west-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n`;
  // 2,000 rows in chunks of 50, as a report streams in from the network.
  const chunks: Buffer[] = [Buffer.from(`${HEADER}\n`)];
  for (let c = 0; c < 40; c++) chunks.push(Buffer.from(Array.from({ length: 50 }, (_, j) => row(c * 50 + j)).join('')));
  let turns = 0;
  let building = true;
  const count = () => {
    if (!building) return;
    turns++;
    setImmediate(count);
  };
  setImmediate(count);
  const index = await ReportIndex.build(REPORT.generatedTime, chunks);
  building = false;
  assert.ok(turns >= 5, `the event loop turned ${turns} times while 2,000 rows were indexed`);
  for (const i of [0, 999, 1999]) assert.deepEqual(index.lookup(rec(`u${i}`, '2020-01-01T00:00:00.000Z')), { hit: { date: new Date('2026-11-01T12:00:00.000Z'), service: 's3', region: 'eu-west-1' } });
});
