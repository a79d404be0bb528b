/**
 * The IAM credential report: last use of every user's (up to two) access keys in
 * two calls, instead of one GetAccessKeyLastUsed per key. It has no access key
 * ids: a key is matched to its user's row by user name (checked against the ARN)
 * and to the slot whose `access_key_N_last_rotated` is its CreateDate to the
 * second. A key the report cannot attribute unambiguously — two keys of a user
 * created in the same second, a key created after the report was generated, a
 * user missing from the report — is looked up with the API (enrichLastUsed).
 *
 * IAM regenerates the report at most every 4 hours and does not record a use
 * within 15 minutes of the previous one: the report is up to 4 hours old, and the
 * manifest says when it was generated. The report a snapshot used is saved in its
 * staging, so a resumed run matches against the very same report.
 */
import { GenerateCredentialReportCommand, GetCredentialReportCommand, type IAMClient } from '@aws-sdk/client-iam';
import { parse } from 'csv-parse/sync';
import { setTimeout as sleep } from 'node:timers/promises';
import { awsErrorName, classifyFatal, isDenied, isThrottle, type CallSite } from '../errors.ts';
import type { AccessKeyRecord } from '../schema.ts';

/** What the report says of one key slot: null where it says N/A, no_information or not_supported. */
export interface LastUse {
  readonly date: Date | null;
  readonly service: string | null;
  readonly region: string | null;
}

/** A credential report as a snapshot keeps it. */
export interface SavedReport {
  /** When IAM generated it (ISO 8601). */
  readonly generatedTime: string;
  /** The CSV as IAM returned it (decoded from base64). */
  readonly csv: string;
}

/** Values of the report that mean "no value". */
const NO_VALUE = new Set(['N/A', 'no_information', 'not_supported', '']);

function value(text: string | undefined): string | null {
  return text === undefined || NO_VALUE.has(text) ? null : text;
}

function date(text: string | undefined): Date | null {
  const v = value(text);
  if (v === null) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

interface Slot {
  readonly rotated: number | null; // epoch seconds
  readonly lastUse: LastUse;
}

interface Row {
  readonly arn: string;
  readonly slots: readonly Slot[];
}

/** Why a key could not be taken from the report (it is looked up by the API then). */
export type Miss = 'user-not-in-report' | 'user-replaced' | 'created-after-report' | 'no-matching-slot' | 'ambiguous-slot';

/** The report, indexed for matching keys. */
export class ReportIndex {
  readonly generatedTime: Date;
  readonly #rows = new Map<string, Row>();

  constructor(saved: SavedReport) {
    const records = parse(saved.csv, { columns: true, skip_empty_lines: true, relax_column_count: true }) as Record<string, string>[];
    // A report cannot mention a moment after its generation: when it does, its
    // GeneratedTime is wrong (moto answers a fixed 2015 date) and the latest moment
    // it mentions is the best lower bound of when it was made.
    let latest = new Date(saved.generatedTime).getTime();
    for (const r of records) for (const v of Object.values(r)) latest = Math.max(latest, date(v)?.getTime() ?? Number.NEGATIVE_INFINITY);
    this.generatedTime = new Date(latest);
    for (const r of records) {
      if (!r.user || r.user === '<root_account>') continue;
      const slots = [1, 2].map((n): Slot => {
        const rotated = date(r[`access_key_${n}_last_rotated`]);
        return {
          rotated: rotated === null ? null : Math.floor(rotated.getTime() / 1000),
          lastUse: { date: date(r[`access_key_${n}_last_used_date`]), service: value(r[`access_key_${n}_last_used_service`]), region: value(r[`access_key_${n}_last_used_region`]) },
        };
      });
      this.#rows.set(r.user, { arn: r.arn ?? '', slots });
    }
  }

  /** The last use of `record`'s key by the report, or why the report cannot tell. */
  lookup(record: Pick<AccessKeyRecord, 'user_name' | 'user_arn' | 'create_date'>): { readonly hit: LastUse } | { readonly miss: Miss } {
    const row = this.#rows.get(record.user_name);
    if (!row) return { miss: 'user-not-in-report' };
    // A user deleted and re-created (or renamed) under that name since: another ARN... or the same.
    if (row.arn !== record.user_arn) return { miss: 'user-replaced' };
    if (record.create_date.getTime() > this.generatedTime.getTime()) return { miss: 'created-after-report' };
    const second = Math.floor(record.create_date.getTime() / 1000);
    const matching = row.slots.filter((s) => s.rotated === second);
    if (matching.length === 0) return { miss: 'no-matching-slot' };
    if (matching.length > 1) return { miss: 'ambiguous-slot' };
    return { hit: matching[0]!.lastUse };
  }
}

/** How fetching the report went: the report, or why the API must do it all. */
export type ReportOutcome = { readonly report: SavedReport } | { readonly denied: string };

/**
 * Generates (if needed) and downloads the credential report, polling while IAM
 * generates it, with backoff. LimitExceeded is retried by the SDK as throttling.
 * A denied report is not fatal: enrichment falls back to the API.
 */
export async function fetchCredentialReport(client: IAMClient, signal: AbortSignal, site: Omit<CallSite, 'what' | 'permission'>, maxWaitMs = 300_000): Promise<ReportOutcome> {
  const start = Date.now();
  let delay = 200;
  const wait = async () => {
    if (Date.now() - start > maxWaitMs) {
      throw classifyFatal(Object.assign(new Error('credential report not ready'), { name: 'ReportInProgress', $fault: 'client' }), {
        ...site,
        what: `GetCredentialReport (still generating after ${Math.round(maxWaitMs / 1000)} s)`,
        permission: 'iam:GetCredentialReport',
      });
    }
    await sleep(delay, undefined, { signal });
    delay = Math.min(delay * 2, 5_000);
  };
  for (;;) {
    try {
      const generated = await client.send(new GenerateCredentialReportCommand({}), { abortSignal: signal });
      if (generated.State !== 'COMPLETE') {
        await wait();
        continue;
      }
      const got = await client.send(new GetCredentialReportCommand({}), { abortSignal: signal });
      if (!got.Content || !got.GeneratedTime) throw Object.assign(new Error('GetCredentialReport returned no content'), { name: 'ReportNotPresent', $fault: 'client' });
      return { report: { generatedTime: got.GeneratedTime.toISOString(), csv: Buffer.from(got.Content).toString('utf8') } };
    } catch (err) {
      if (signal.aborted) throw err;
      const name = awsErrorName(err);
      if (isDenied(err)) return { denied: name };
      // Generating, expired or gone between our two calls: generate again.
      if (name === 'ReportInProgress' || name === 'ReportNotPresent' || name === 'ReportExpired' || name === 'CredentialReportNotReadyException' || isThrottle(err)) {
        await wait();
        continue;
      }
      throw classifyFatal(err, { ...site, what: 'GenerateCredentialReport / GetCredentialReport', permission: 'iam:GenerateCredentialReport and iam:GetCredentialReport' });
    }
  }
}
