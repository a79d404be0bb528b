/**
 * Records and configurations for unit tests, built from the schema's columns, so
 * that a test names only the fields it cares about and keeps working when the
 * schema gains columns.
 */
import type { DataConfig } from '../../pipeline/checkpoint.ts';
import type { UserRef } from '../../pipeline/items.ts';
import { COLUMNS, type AccessKeyRecord } from '../../pipeline/schema.ts';

export const SNAPSHOT_ID = '20261128T111000Z';
export const SNAPSHOT_TIME = new Date('2026-11-28T11:10:00.000Z');
export const ACCOUNT = '123456789012';

/** The options that shape the data, for a CSV export of everything. */
export const DATA_CONFIG: DataConfig = { format: 'csv', pathPrefix: '/', statuses: [], endpoint: null, schemaVersion: 1, lastUsed: 'off', accounts: 'self', shard: null };

/** A user: the id identifies it; the name may change. */
export function userRef(id: string, name = id.toLowerCase()): UserRef {
  return { userName: name, userId: `AIDA${id}`, accountId: ACCOUNT, arn: `arn:aws:iam::${ACCOUNT}:user/${name}`, path: '/', createDate: '2020-01-01T00:00:00.000Z' };
}

/** A valid record of `user` and `key`, every other column a plain value (nullable ones null). */
export function recordOf(user: string, key: string, fields: Partial<AccessKeyRecord> = {}): AccessKeyRecord {
  const out: Record<string, unknown> = {};
  for (const c of COLUMNS) out[c.name] = c.nullable ? null : c.type === 'timestamp' ? new Date('2020-01-01T00:00:00.000Z') : c.type === 'int32' ? 0 : '';
  Object.assign(out, {
    snapshot_id: SNAPSHOT_ID,
    snapshot_time: SNAPSHOT_TIME,
    account_id: ACCOUNT,
    user_name: user,
    user_id: `AIDA${user.toUpperCase()}`,
    access_key_id: key,
    status: 'Active',
    user_arn: `arn:aws:iam::${ACCOUNT}:user/${user}`,
    user_path: '/',
  });
  for (const k of Object.keys(out)) if (!COLUMNS.some((c) => c.name === k)) delete out[k];
  return { ...(out as unknown as AccessKeyRecord), ...fields };
}
