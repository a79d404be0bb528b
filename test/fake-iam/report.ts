/**
 * IAM's credential report for one account: the generation state machine and
 * the CSV. Pure apart from the clock, which the caller passes in.
 *
 * Invariants:
 * - At most one generation runs; it has a fixed completion instant set when it
 *   starts, so changing `delayMs` later does not move it.
 * - A report's content is the account as it was when its generation started,
 *   and its GeneratedTime is that instant rounded down to the second. A key or
 *   use later than that is not in it until a new generation.
 * - A finished generation replaces the current report the first time anyone
 *   looks (`settle`), so the state only moves forward with the clock.
 * - While a generation runs, GetCredentialReport answers ReportInProgress even
 *   if an older report exists, as IAM does.
 */
import { SECOND, type FakeKey, type FakeUser, type LastUsed } from './data.ts';
import { IamError } from './errors.ts';

/** Timing of report generation; both change at once with `configure`. */
export interface CredentialReportTiming {
  /** How long a generation takes. */
  readonly delayMs: number;
  /** Age after which a report is expired (GetCredentialReport: 410 ReportExpired) and GenerateCredentialReport starts a new one. */
  readonly maxAgeMs: number;
}

export const DEFAULT_REPORT_TIMING: CredentialReportTiming = Object.freeze({ delayMs: 0, maxAgeMs: 4 * 60 * 60 * SECOND });

/** IAM's header, column for column. */
export const REPORT_HEADER = [
  'user', 'arn', 'user_creation_time', 'password_enabled', 'password_last_used', 'password_last_changed', 'password_next_rotation', 'mfa_active',
  'access_key_1_active', 'access_key_1_last_rotated', 'access_key_1_last_used_date', 'access_key_1_last_used_region', 'access_key_1_last_used_service',
  'access_key_2_active', 'access_key_2_last_rotated', 'access_key_2_last_used_date', 'access_key_2_last_used_region', 'access_key_2_last_used_service',
  'cert_1_active', 'cert_1_last_rotated', 'cert_2_active', 'cert_2_last_rotated',
] as const;

/** One key as a report shows it (a report has no key ids: this is the truth behind a row). */
export interface ReportKey {
  readonly accessKeyId: string;
  readonly userName: string;
  readonly userId: string;
  /** 1 or 2: which `access_key_N_*` columns hold it. */
  readonly slot: 1 | 2;
  readonly active: boolean;
  /** `access_key_N_last_rotated`: the key's CreateDate. */
  readonly lastRotated: Date;
  /** What `access_key_N_last_used_*` say; null when never used (N/A). */
  readonly lastUsed: LastUsed | null;
}

/** A finished report. */
export interface CredentialReport {
  /** When its generation started, exactly; its age is measured from here. */
  readonly startedAt: number;
  readonly generatedTime: Date;
  readonly csv: string;
  readonly keys: readonly ReportKey[];
}

/** What a report reads from the account at the start of a generation. */
export interface ReportSource {
  readonly accountId: string;
  readonly users: readonly FakeUser[];
  readonly keysByUser: ReadonlyMap<string, readonly FakeKey[]>;
  /** Whether the root user has an access key (its row's access_key_1_active). */
  readonly rootKeysPresent?: boolean;
}

/** When the account (and its root user) came to be: before every generated user. */
const ACCOUNT_CREATED = new Date(Date.UTC(2014, 11, 1));

/** ISO 8601 to the second with an explicit UTC offset, as the report writes dates. */
export const reportDate = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, '+00:00');

/** RFC 4180 quoting: user names may hold commas, and ARNs hold the name. */
const csvField = (value: string): string => (/[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);

function keyColumns(key: FakeKey | undefined): string[] {
  if (!key) return ['false', 'N/A', 'N/A', 'N/A', 'N/A'];
  const used = key.lastUsed;
  return [String(key.status === 'Active'), reportDate(key.createDate), used ? reportDate(used.date) : 'N/A', used?.region ?? 'N/A', used?.service ?? 'N/A'];
}

/**
 * The report of the account as it is now. A user with more than two keys (the
 * fake allows it, IAM does not) shows its two oldest, in ListAccessKeys order.
 */
export function buildReport(source: ReportSource, startedAt: number): CredentialReport {
  const generatedTime = new Date(Math.floor(startedAt / SECOND) * SECOND);
  const rootKey = source.rootKeysPresent ? ['true', reportDate(ACCOUNT_CREATED), 'N/A', 'N/A', 'N/A'] : keyColumns(undefined);
  const rows: string[][] = [
    ['<root_account>', `arn:aws:iam::${source.accountId}:root`, reportDate(ACCOUNT_CREATED), 'not_supported', 'no_information', 'not_supported', 'not_supported', 'true', ...rootKey, ...keyColumns(undefined), 'false', 'N/A', 'false', 'N/A'],
  ];
  const keys: ReportKey[] = [];
  for (const user of source.users) {
    const [first, second] = source.keysByUser.get(user.userName) ?? [];
    rows.push([user.userName, user.arn, reportDate(user.createDate), 'false', 'N/A', 'N/A', 'N/A', 'false', ...keyColumns(first), ...keyColumns(second), 'false', 'N/A', 'false', 'N/A']);
    [first, second].forEach((key, index) => {
      if (!key) return;
      keys.push({
        accessKeyId: key.accessKeyId,
        userName: user.userName,
        userId: user.userId,
        slot: index === 0 ? 1 : 2,
        active: key.status === 'Active',
        lastRotated: key.createDate,
        lastUsed: key.lastUsed ?? null,
      });
    });
  }
  const csv = [REPORT_HEADER as readonly string[], ...rows].map((row) => row.map(csvField).join(',')).join('\n');
  return { startedAt, generatedTime, csv, keys };
}

/** GenerateCredentialReport's answer. */
export interface GenerateAnswer {
  readonly state: 'STARTED' | 'COMPLETE';
  readonly description: string;
}

/** One account's report and the generation in progress, if any. */
export class CredentialReports {
  #current: CredentialReport | null = null;
  #generating: { readonly report: CredentialReport; readonly completesAt: number } | null = null;

  /** Makes a finished generation the current report. */
  #settle(now: number): void {
    if (this.#generating && now >= this.#generating.completesAt) {
      this.#current = this.#generating.report;
      this.#generating = null;
    }
  }

  /** GenerateCredentialReport: STARTED while a generation runs (starting one if needed), COMPLETE once a fresh report exists. */
  generate(now: number, timing: CredentialReportTiming, source: () => ReportSource): GenerateAnswer {
    this.#settle(now);
    if (this.#generating) return { state: 'STARTED', description: 'Report generation in progress.' };
    if (this.#current && now - this.#current.startedAt < timing.maxAgeMs) return { state: 'COMPLETE', description: 'Report is available.' };
    this.#generating = { report: buildReport(source(), now), completesAt: now + timing.delayMs };
    return { state: 'STARTED', description: 'No report exists. Starting a new report generation task' };
  }

  /** GetCredentialReport: the current report, or the IamError IAM answers instead. */
  get(now: number, timing: CredentialReportTiming): CredentialReport {
    this.#settle(now);
    if (this.#generating) throw new IamError('ReportInProgress', 'Credential report generation is in progress. Try again later.');
    if (!this.#current) throw new IamError('ReportNotPresent', 'Unable to locate credential report. Please generate a credential report.');
    if (now - this.#current.startedAt >= timing.maxAgeMs) throw new IamError('ReportExpired', 'The credential report has expired. Please generate a new report.');
    return this.#current;
  }

  /** The latest finished report, expired or not; null before the first one finishes. */
  latest(now: number): CredentialReport | null {
    this.#settle(now);
    return this.#current;
  }
}
