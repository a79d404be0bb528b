/**
 * Organization-wide exports in tests: what a complete export of a fake organization
 * must hold (every readable key of every exported account), the accounts dataset
 * as a warehouse reads it back, per-account call counts, and a child's peak RSS.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeIam } from '../fake-iam/server.ts';
import type { Format } from '../../pipeline/sinks/index.ts';
import { FORMAT_EXTENSION } from '../../pipeline/sinks/index.ts';
import { queryDuckDb } from './duckdb.ts';
import { sortRows, type KeyRow } from './expect.ts';

export const ROLE = 'OrganizationAccountAccessRole';

/** The accounts `--organization` selects: ACTIVE ones (the management account included). */
export function activeAccounts(fake: FakeIam) {
  return fake.accounts().filter((a) => a.status === 'ACTIVE' && a.state === 'ACTIVE');
}

/** The rows a complete export of `accountIds` must publish, sorted as published. */
export function orgExpectedRows(fake: FakeIam, accountIds: readonly string[]): KeyRow[] {
  const rows: KeyRow[] = [];
  for (const id of accountIds) {
    const truth = fake.truth(id);
    const users = new Map(truth.users.map((u) => [u.userName, u]));
    for (const k of fake.readableKeys(id)) {
      rows.push({ account_id: id, user_name: k.userName, user_id: users.get(k.userName)!.userId, access_key_id: k.accessKeyId, status: k.status, create_date: k.createDate.toISOString() });
    }
  }
  return sortRows(rows);
}

/** One row of the accounts dataset, normalized (CSV and Parquet read alike). */
export interface AccountRow {
  account_id: string;
  account_name: string | null;
  account_alias: string | null;
  root_access_keys_present: boolean | null;
  users_exported: number;
  keys_exported: number;
  outcome: string;
  error_code: string | null;
}

/** The published accounts dataset of `out` (one snapshot), in file order. */
export async function publishedAccounts(out: string, format: Format): Promise<AccountRow[]> {
  const glob = `'${join(out, 'accounts', '*', `*${FORMAT_EXTENSION[format]}`).replaceAll("'", "''")}'`;
  const scan = format === 'parquet' ? `read_parquet(${glob})` : `read_csv(${glob}, header = true, all_varchar = true)`;
  const { rows } = await queryDuckDb(`select * from ${scan}`);
  const text = (v: unknown) => (v === null || v === undefined || v === '' ? null : String(v));
  return rows.map((r) => ({
    account_id: String(r.account_id),
    account_name: text(r.account_name),
    account_alias: text(r.account_alias),
    root_access_keys_present: text(r.root_access_keys_present) === null ? null : String(r.root_access_keys_present) === 'true',
    users_exported: Number(r.users_exported),
    keys_exported: Number(r.keys_exported),
    outcome: String(r.outcome),
    error_code: text(r.error_code),
  }));
}

/** The accounts dataset a complete export of `accountIds` must publish (names only with --organization). */
export function expectedAccounts(fake: FakeIam, accountIds: readonly string[], o: { names: boolean; failed?: ReadonlyMap<string, string> }): AccountRow[] {
  const byId = new Map(fake.accounts().map((a) => [a.id, a]));
  return [...accountIds].sort().map((id) => {
    const a = byId.get(id)!;
    const code = o.failed?.get(id);
    if (code) return { account_id: id, account_name: o.names ? a.name : null, account_alias: null, root_access_keys_present: null, users_exported: 0, keys_exported: 0, outcome: 'failed', error_code: code };
    return {
      account_id: id,
      account_name: o.names ? a.name : null,
      account_alias: a.alias,
      root_access_keys_present: a.rootKeysPresent,
      users_exported: fake.truth(id).users.length,
      keys_exported: fake.readableKeys(id).length,
      outcome: 'exported',
      error_code: null,
    };
  });
}

/** Requests signed by each account's credentials since the last reset (0 for none). */
export function callsByAccount(fake: FakeIam): Map<string, number> {
  return new Map(Object.entries(fake.stats().byAccount).map(([id, s]) => [id, s.totalCalls]));
}

/** The peak RSS (VmHWM) of a running process in bytes, or undefined once it is gone. */
export function peakRss(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
