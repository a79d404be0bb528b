/**
 * What a complete export must contain, computed from a fake's ground truth, and
 * the same projection of what DuckDB reads back, so tests compare like with like.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FakeIam } from '../fake-iam/server.ts';
import type { TruthKey, TruthUser } from '../fake-iam/truth.ts';
import { readSnapshotRows } from './duckdb.ts';
import type { Format } from '../../pipeline/sinks/index.ts';
import type { Manifest } from '../../pipeline/snapshot.ts';

/** The columns that identify a row and come from IAM (not from the snapshot clock). */
export interface KeyRow {
  account_id: string;
  user_name: string;
  user_id: string;
  access_key_id: string;
  status: string;
  create_date: string;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Sorts rows by the published sort key. */
export function sortRows<T extends KeyRow>(rows: T[]): T[] {
  return [...rows].sort((a, b) => cmp(a.account_id, b.account_id) || cmp(a.user_name, b.user_name) || cmp(a.access_key_id, b.access_key_id));
}

/** The rows a complete export of the fake must publish (readable keys), sorted. */
export function expectedRows(fake: FakeIam, filter: { statuses?: string[]; pathPrefix?: string } = {}): KeyRow[] {
  return sortRows(
    accountRows(fake, undefined, (k, user) => (!filter.statuses || filter.statuses.includes(k.status)) && (!filter.pathPrefix || user.path.startsWith(filter.pathPrefix))),
  );
}

/** The rows of a complete export of several accounts of the fake (an organization), sorted. */
export function expectedRowsOf(fake: FakeIam, accountIds: readonly string[]): KeyRow[] {
  return sortRows(accountIds.flatMap((id) => accountRows(fake, id, () => true)));
}

/** The readable keys of one account of the fake (default: the management account) that `keep` keeps, as rows. */
function accountRows(fake: FakeIam, accountId: string | undefined, keep: (key: TruthKey, user: TruthUser) => boolean): KeyRow[] {
  const truth = fake.truth(accountId);
  const users = new Map(truth.users.map((u) => [u.userName, u]));
  return fake
    .readableKeys(accountId)
    .filter((k) => keep(k, users.get(k.userName)!))
    .map((k) => ({
      account_id: truth.accountId,
      user_name: k.userName,
      user_id: users.get(k.userName)!.userId,
      access_key_id: k.accessKeyId,
      status: k.status,
      create_date: k.createDate.toISOString(),
    }));
}

/** Every published row of `out` (one snapshot expected), projected to KeyRow, in file order. */
export async function publishedRows(out: string, format: Format): Promise<{ rows: KeyRow[]; all: Record<string, unknown>[]; types: Record<string, string> }> {
  const result = await readSnapshotRows(out, format);
  const types = Object.fromEntries(result.columns.map((c) => [c.name, c.type]));
  const rows = result.rows.map((r) => ({
    account_id: String(r.account_id),
    user_name: String(r.user_name),
    user_id: String(r.user_id),
    access_key_id: String(r.access_key_id),
    status: String(r.status),
    create_date: String(r.create_date),
  }));
  return { rows, all: result.rows, types };
}

/** The one published snapshot directory under `out`. */
export async function onlySnapshotDir(out: string): Promise<string> {
  const dirs = (await readdir(join(out, 'access_keys'))).filter((d) => d.startsWith('snapshot_id='));
  if (dirs.length !== 1) throw new Error(`expected one snapshot under ${out}, found ${dirs.length}`);
  return join(out, 'access_keys', dirs[0]!);
}

/** Checks every file of the manifest against its sha256 and row count; returns the manifest. */
export async function verifyManifest(dir: string): Promise<Manifest> {
  const manifest = JSON.parse(await readFile(join(dir, '_manifest.json'), 'utf8')) as Manifest;
  for (const f of manifest.files) {
    const bytes = await readFile(join(dir, f.file));
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== f.sha256) throw new Error(`sha256 mismatch for ${f.file}`);
    if (bytes.length !== f.bytes) throw new Error(`size mismatch for ${f.file}`);
  }
  return manifest;
}
