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
import { GenerateCredentialReportCommand, GetCredentialReportCommand, type GetCredentialReportCommandInput, type GetCredentialReportCommandOutput, type IAMClient } from '@aws-sdk/client-iam';
import type { DeserializeMiddleware } from '@smithy/types';
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

/** The last use of a slot the report has nothing for (most slots): one object for all. */
const NO_USE: LastUse = Object.freeze({ date: null, service: null, region: null });

/** Key slot `n` (1 or 2) of a report row. */
function slot(r: Record<string, string>, n: 1 | 2): Slot {
  const rotated = date(r[`access_key_${n}_last_rotated`]);
  const lastUse = { date: date(r[`access_key_${n}_last_used_date`]), service: value(r[`access_key_${n}_last_used_service`]), region: value(r[`access_key_${n}_last_used_region`]) };
  return {
    rotated: rotated === null ? null : Math.floor(rotated.getTime() / 1000),
    lastUse: lastUse.date === null && lastUse.service === null && lastUse.region === null ? NO_USE : lastUse,
  };
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
    // A report cannot mention a moment after its generation: when it does, its
    // GeneratedTime is wrong (moto answers a fixed 2015 date) and the latest moment
    // it mentions is the best lower bound of when it was made.
    let latest = new Date(saved.generatedTime).getTime();
    // One row at a time, never the whole report as objects: parsed all at once, a
    // 5,000-user report was ~50 MiB live for a moment, and V8 sized the heap after
    // that moment for the rest of the run (issue 9: memory must not grow with the account).
    parse(saved.csv, {
      columns: true,
      skip_empty_lines: true,
      relax_column_count: true,
      on_record: (r: Record<string, string>) => {
        for (const v of Object.values(r)) latest = Math.max(latest, date(v)?.getTime() ?? Number.NEGATIVE_INFINITY);
        if (r.user && r.user !== '<root_account>') this.#rows.set(r.user, { arn: r.arn ?? '', slots: [slot(r, 1), slot(r, 2)] });
        return null; // kept in #rows only
      },
    });
    this.generatedTime = new Date(latest);
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
      const got = await client.send(withContentAside(new GetCredentialReportCommand({})), { abortSignal: signal });
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

const CONTENT_OPEN = Buffer.from('<Content>');
const CONTENT_CLOSE = Buffer.from('</Content>');

/**
 * GetCredentialReport with its Content kept out of the SDK's XML parser, which
 * builds a text node one character at a time (@aws-sdk/xml-builder, latest release
 * included): for the report's Content — the whole CSV in base64 — that is a rope of
 * one heap node per character, ~50 MiB of heap for a 5,000-user account and ~1 GiB
 * for 100,000 (measured), and V8 then sizes the heap after that moment for the rest
 * of the run. Content holds base64 only (no markup, no entities), so the element is
 * cut out of the raw body before the SDK parses the rest (ReportFormat,
 * GeneratedTime, errors: still the SDK's), and its decoded bytes become the
 * output's Content. Only a 200 answer with a Content element is touched.
 */
export function withContentAside(command: GetCredentialReportCommand): GetCredentialReportCommand {
  let aside: Uint8Array | undefined;
  // Around everything: gives the output its Content back.
  command.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      if (aside !== undefined) (result.output as { Content?: Uint8Array }).Content = aside;
      return result;
    },
    { step: 'initialize', name: 'iamKeyExportContentAsideOutput' },
  );
  // Inside the deserializer: sees the raw answer before it is parsed.
  const inner: DeserializeMiddleware<GetCredentialReportCommandInput, GetCredentialReportCommandOutput> = (next) => async (args) => {
    const result = await next(args);
    const response = result.response as { statusCode?: number; body?: unknown };
    if (response.statusCode !== 200 || response.body === undefined || response.body === null) return result;
    const body = await bytesOf(response.body);
    const open = body.indexOf(CONTENT_OPEN);
    const close = open < 0 ? -1 : body.indexOf(CONTENT_CLOSE, open);
    if (close < 0) {
      response.body = body;
      return result;
    }
    aside = Buffer.from(body.subarray(open + CONTENT_OPEN.length, close).toString('latin1'), 'base64');
    response.body = Buffer.concat([body.subarray(0, open), body.subarray(close + CONTENT_CLOSE.length)]);
    return result;
  };
  command.middlewareStack.addRelativeTo(inner, { relation: 'after', toMiddleware: 'deserializerMiddleware', name: 'iamKeyExportContentAside' });
  return command;
}

/** The whole body of a raw answer (a Node stream from the SDK's HTTP handler, or bytes). */
async function bytesOf(body: unknown): Promise<Buffer> {
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  return Buffer.concat(chunks);
}
