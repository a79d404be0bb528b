/**
 * What a user writes by hand, as the yardstick for the fan-out: the SDK's own
 * paginators, the users of each ListUsers page paged in batches of 16 with
 * `Promise.all`, rows written with csv-stringify. No resume, no checkpoint, no
 * sorting, no atomic publish: the least work that produces the same CSV columns.
 *
 *   node --import tsx bench/baseline.ts --endpoint-url URL --out FILE [--batch 16]
 *
 * Prints one JSON line, `{ rows, calls, wallMs }`; wallMs runs from after the
 * imports to the file being closed, like the exporter's wall_time_ms.
 */
import { createWriteStream } from 'node:fs';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { IAMClient, paginateListAccessKeys, paginateListUsers, type AccessKeyMetadata, type User } from '@aws-sdk/client-iam';
import { stringify } from 'csv-stringify';

const COLUMNS = ['snapshot_id', 'snapshot_time', 'account_id', 'user_name', 'user_id', 'access_key_id', 'status', 'create_date', 'key_age_days', 'last_used_date', 'last_used_service', 'last_used_region'];
const DAY_MS = 86_400_000;

/** Every key of one user, through the SDK paginator. */
async function keysOf(client: IAMClient, user: User): Promise<AccessKeyMetadata[]> {
  const keys: AccessKeyMetadata[] = [];
  for await (const page of paginateListAccessKeys({ client, pageSize: 100 }, { UserName: user.UserName! })) keys.push(...(page.AccessKeyMetadata ?? []));
  return keys;
}

/** Exports every key of the account behind `endpoint` to `file`. */
export async function exportByHand(endpoint: string, file: string, batch: number): Promise<{ rows: number; calls: number }> {
  const client = new IAMClient({ endpoint, region: process.env.AWS_REGION ?? 'us-east-1' });
  let calls = 0;
  client.middlewareStack.add((next) => (args) => (calls++, next(args)), { step: 'initialize', name: 'countCalls' });
  const now = new Date();
  const snapshotId = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  let rows = 0;
  async function* records() {
    for await (const page of paginateListUsers({ client, pageSize: 100 }, {})) {
      const users = page.Users ?? [];
      for (let i = 0; i < users.length; i += batch) {
        const slice = users.slice(i, i + batch);
        const keys = await Promise.all(slice.map((u) => keysOf(client, u)));
        for (const [j, user] of slice.entries()) {
          for (const k of keys[j]!) {
            rows++;
            yield {
              snapshot_id: snapshotId,
              snapshot_time: now,
              account_id: user.Arn!.split(':')[4],
              user_name: user.UserName,
              user_id: user.UserId,
              access_key_id: k.AccessKeyId,
              status: k.Status,
              create_date: k.CreateDate,
              key_age_days: Math.floor((now.getTime() - k.CreateDate!.getTime()) / DAY_MS),
              last_used_date: null,
              last_used_service: null,
              last_used_region: null,
            };
          }
        }
      }
    }
  }
  try {
    await pipeline(Readable.from(records()), stringify({ header: true, columns: COLUMNS, cast: { date: (d) => d.toISOString() } }), createWriteStream(file));
  } finally {
    client.destroy();
  }
  return { rows, calls };
}

// Run as a script (the bench spawns it like the exporter, in its own process).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { 'endpoint-url': { type: 'string' }, out: { type: 'string' }, batch: { type: 'string', default: '16' } } });
  if (!values['endpoint-url'] || !values.out) {
    process.stderr.write('usage: baseline.ts --endpoint-url URL --out FILE [--batch 16]\n');
    process.exit(2);
  }
  const started = performance.now();
  const r = await exportByHand(values['endpoint-url'], values.out, Number(values.batch));
  process.stdout.write(JSON.stringify({ ...r, wallMs: Math.round(performance.now() - started) }) + '\n');
}
