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
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { awsErrorName, classifyFatal, isDenied, isThrottle, type CallSite } from '../errors.ts';
import { PackedMap } from '../packed.ts';
import { csvRecords, type CsvSource } from './csvRecords.ts';
import type { AccessKeyRecord } from '../schema.ts';

/** What the report says of one key slot: null where it says N/A, no_information or not_supported. */
export interface LastUse {
  readonly date: Date | null;
  readonly service: string | null;
  readonly region: string | null;
}

/** A credential report as fetched. */
export interface FetchedReport<T> {
  /** When IAM says it generated it (ISO 8601). */
  readonly generatedTime: string;
  /** What the content sink made of the CSV (decoded from base64) of the answer the SDK returned. */
  readonly content: T;
}

/**
 * Where the CSV of one attempt of GetCredentialReport goes, piece by piece as the
 * answer streams in: the report is never whole in memory (100,000 users: ~25 MB of
 * CSV, and memory must not grow with the account). Every attempt the SDK makes has
 * a sink of its own: an attempt cut midway and retried is aborted, never appended to.
 */
export interface ContentSink<T> {
  /** Takes the next piece; resolves when the sink can take more. */
  write(chunk: Buffer): Promise<void>;
  /** The CSV is whole: what the sink made of it. */
  end(): Promise<T>;
  /** The attempt failed: the sink drops what it had; resolves once it has. */
  abort(reason: unknown): Promise<void>;
}

/** Values of the report that mean "no value". */
const NO_VALUE = new Set(['N/A', 'no_information', 'not_supported', '']);

function value(text: string | undefined): string | null {
  return text === undefined || NO_VALUE.has(text) ? null : text;
}

/** The moment `text` says, in epoch milliseconds; NaN for none (or not a date). */
function moment(text: string | undefined): number {
  const v = value(text);
  return v === null ? Number.NaN : Date.parse(v);
}

interface Slot {
  readonly rotated: number | null; // epoch seconds
  readonly lastUse: LastUse;
}

/** The last use of a slot the report has nothing for (most slots): one object for all. */
const NO_USE: LastUse = Object.freeze({ date: null, service: null, region: null });

/**
 * The columns that date something that already happened when the report was made.
 * Not `password_next_rotation` (a password policy's next expiry, in the future), and
 * not text columns: a user named "12345" reads as the year 12345 to `new Date`.
 */
const PAST_MOMENTS = [
  'user_creation_time',
  'password_last_used',
  'password_last_changed',
  ...[1, 2].flatMap((n) => [`access_key_${n}_last_rotated`, `access_key_${n}_last_used_date`, `cert_${n}_last_rotated`]),
];

/** The columns of a report row the index keeps, in this order (a key slot is 4 of them). */
const KEPT = ['arn', ...[1, 2].flatMap((n) => ['last_rotated', 'last_used_date', 'last_used_service', 'last_used_region'].map((c) => `access_key_${n}_${c}`))];
/** Of each KEPT column that is a moment, its place in PAST_MOMENTS (each is one, so it is parsed once); else -1. */
const KEPT_MOMENT = KEPT.map((c) => (c.endsWith('_last_rotated') || c.endsWith('_last_used_date') ? PAST_MOMENTS.indexOf(c) : -1));

/** A moment as the index keeps it: epoch milliseconds in base 36 (8 characters, not 25), or '' for none. */
function packDate(ms: number): string {
  return Number.isNaN(ms) ? '' : ms.toString(36);
}

/** The moment `packDate` kept, or null for none. */
function unpackDate(text: string | undefined): Date | null {
  return text ? new Date(parseInt(text, 36)) : null;
}

/**
 * A report row as the index keeps it: the kept columns in one string, tab-separated
 * (no ARN, date, service or region holds a tab), "no value" texts emptied, dates as
 * numbers, and the ARN as its path alone when it is `arnPrefix` + path + user name,
 * as every user's is. One short string a user instead of a row of objects and dates:
 * a report's users are many (memory must not grow with the account) while lookups
 * are one per key.
 */
function packRow(row: readonly string[], at: Columns, moments: Float64Array, arnPrefix: string): string {
  let packed = packArn(value(row[at.arn]) ?? '', row[at.user] ?? '', arnPrefix);
  for (let i = 1; i < KEPT.length; i++) {
    const m = KEPT_MOMENT[i]!;
    packed += '\t' + (m >= 0 ? packDate(moments[m]!) : (value(row[at.kept[i]!]) ?? ''));
  }
  return packed;
}

/** Where the columns the index reads are in the report's rows (-1: not in this report). */
interface Columns {
  readonly user: number;
  readonly arn: number;
  /** Of each KEPT column, in its order. */
  readonly kept: readonly number[];
  /** Of each PAST_MOMENTS column, in its order. */
  readonly past: readonly number[];
}

function columnsOf(header: readonly string[]): Columns {
  const at = (c: string) => header.indexOf(c);
  return { user: at('user'), arn: at('arn'), kept: KEPT.map(at), past: PAST_MOMENTS.map(at) };
}

/**
 * What lies between `prefix` and `name` in `arn` (the user's path: it starts with '/',
 * which no ARN does) when `arn` is made of those three; else the ARN whole.
 */
function packArn(arn: string, name: string, prefix: string): string {
  const path = arn.startsWith(prefix + '/') && arn.endsWith(name) ? arn.slice(prefix.length, arn.length - name.length) : '';
  return path.startsWith('/') ? path : arn;
}

/** Key slot `n` (1 or 2) of a packed row's fields. */
function slot(fields: readonly string[], n: 1 | 2): Slot {
  const at = 1 + (n - 1) * 4;
  const rotated = unpackDate(fields[at]);
  const lastUse = { date: unpackDate(fields[at + 1]), service: value(fields[at + 2]), region: value(fields[at + 3]) };
  return {
    rotated: rotated === null ? null : Math.floor(rotated.getTime() / 1000),
    lastUse: lastUse.date === null && lastUse.service === null && lastUse.region === null ? NO_USE : lastUse,
  };
}

/** Why a key could not be taken from the report (it is looked up by the API then). */
export type Miss = 'user-not-in-report' | 'user-replaced' | 'created-after-report' | 'no-matching-slot' | 'ambiguous-slot';

/** Rows indexed between two turns of the event loop. */
const YIELD_ROWS = 128;

/** The report, indexed for matching keys. */
export class ReportIndex {
  /** Packed rows (packRow) by user name, off the heap (a report's users are many). */
  readonly #rows = new PackedMap();
  /** What every user's ARN starts with, `arn:<partition>:iam::<account>:user` (from the first user's). */
  #arnPrefix = '';
  #generatedTime: Date;

  private constructor(generatedTime: string) {
    this.#generatedTime = new Date(generatedTime);
  }

  /** When the report was made: IAM's GeneratedTime, or a later moment the report mentions. */
  get generatedTime(): Date {
    return this.#generatedTime;
  }

  /**
   * Indexes the report IAM says it generated at `generatedTime`, row by row as its
   * bytes come: never the whole report as one string or as objects (parsed at once, a
   * 5,000-user report was ~50 MiB live for a moment, and V8 sized the heap after that
   * moment for the rest of the run: issue 9, memory must not grow with the account).
   */
  static async build(generatedTime: string, csv: CsvSource): Promise<ReportIndex> {
    const index = new ReportIndex(generatedTime);
    // A report cannot mention a past moment after its generation: when it does, its
    // GeneratedTime is wrong (moto answers a fixed 2015 date) and the latest such moment
    // is the best lower bound of when it was made.
    let latest = index.#generatedTime.getTime();
    let at: Columns | undefined;
    const moments = new Float64Array(PAST_MOMENTS.length); // this row's, in PAST_MOMENTS order
    let seen = 0;
    // Rows as arrays, read by the header's positions: no object of 22 named fields a row.
    for await (const batch of csvRecords(csv)) {
      for (const row of batch) {
        if (at === undefined) {
          at = columnsOf(row);
          continue;
        }
        // The report arrives while users are being paged: let their answers in between
        // (a 2,000-user report held the event loop for ~100 ms, every call waiting on it).
        if (++seen % YIELD_ROWS === 0) await turn();
        for (let i = 0; i < PAST_MOMENTS.length; i++) {
          const ms = moment(row[at.past[i]!]);
          moments[i] = ms;
          if (ms > latest) latest = ms;
        }
        const user = row[at.user];
        if (!user || user === '<root_account>') continue;
        if (index.#rows.size === 0) {
          const arn = row[at.arn] ?? '';
          const found = arn.indexOf(':user/');
          index.#arnPrefix = found < 0 ? '' : arn.slice(0, found + ':user'.length);
        }
        index.#rows.set(user, packRow(row, at, moments, index.#arnPrefix));
      }
    }
    index.#generatedTime = new Date(latest);
    return index;
  }

  /**
   * Drops `userName`'s row: a user whose keys are all read and enriched is not looked
   * up again in this run, and 100,000 users' rows are ~7 MiB the run would otherwise
   * hold to its end (their blocks go once most rows are dropped: PackedMap). A key of a
   * user met again after all (one listed anew) is looked up with the API, as any the
   * report cannot tell.
   */
  forget(userName: string): void {
    this.#rows.delete(userName);
  }

  /** Users whose rows are still held (for tests). */
  get size(): number {
    return this.#rows.size;
  }

  /** The last use of `record`'s key by the report, or why the report cannot tell. */
  lookup(record: Pick<AccessKeyRecord, 'user_name' | 'user_arn' | 'create_date'>): { readonly hit: LastUse } | { readonly miss: Miss } {
    const row = this.#rows.get(record.user_name);
    if (row === undefined) return { miss: 'user-not-in-report' };
    const fields = row.split('\t');
    const arn = fields[0]!.startsWith('/') ? this.#arnPrefix + fields[0] + record.user_name : fields[0];
    // A user deleted and re-created (or renamed) under that name since: another ARN... or the same.
    if (arn !== record.user_arn) return { miss: 'user-replaced' };
    if (record.create_date.getTime() > this.#generatedTime.getTime()) return { miss: 'created-after-report' };
    const second = Math.floor(record.create_date.getTime() / 1000);
    const matching = [slot(fields, 1), slot(fields, 2)].filter((s) => s.rotated === second);
    if (matching.length === 0) return { miss: 'no-matching-slot' };
    if (matching.length > 1) return { miss: 'ambiguous-slot' };
    return { hit: matching[0]!.lastUse };
  }
}

/** How fetching the report went: the report, or why the API must do it all. */
export type ReportOutcome<T> = { readonly report: FetchedReport<T> } | { readonly denied: string };

/**
 * Generates (if needed) and downloads the credential report, polling while IAM
 * generates it, with backoff. LimitExceeded is retried by the SDK as throttling.
 * A denied report is not fatal: enrichment falls back to the API. The CSV goes to
 * a sink from `open`, one per attempt of GetCredentialReport (ContentSink).
 */
export async function fetchCredentialReport<T>(
  client: IAMClient,
  signal: AbortSignal,
  site: Omit<CallSite, 'what' | 'permission'>,
  open: () => ContentSink<T>,
  maxWaitMs = 300_000,
): Promise<ReportOutcome<T>> {
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
      let content: { readonly value: T } | undefined;
      const got = await client.send(
        withContentAside(new GetCredentialReportCommand({}), open, (value) => {
          content = { value };
        }),
        { abortSignal: signal },
      );
      if (!got.Content || !got.GeneratedTime || !content) throw Object.assign(new Error('GetCredentialReport returned no content'), { name: 'ReportNotPresent', $fault: 'client' });
      return { report: { generatedTime: got.GeneratedTime.toISOString(), content: content.value } };
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
/** Bytes base64 ignores (a pretty-printed answer); removed so 4-character groups stay aligned. */
const SPACE = /[\s]/g;

/**
 * GetCredentialReport with its Content kept out of the SDK's XML parser, which
 * builds a text node one character at a time (@aws-sdk/xml-builder, latest release
 * included): for the report's Content — the whole CSV in base64 — that is a rope of
 * one heap node per character, ~50 MiB of heap for a 5,000-user account and ~1 GiB
 * for 100,000 (measured), and V8 then sizes the heap after that moment for the rest
 * of the run. Content holds base64 only (no markup, no entities), so the element is
 * cut out of the raw answer as it streams in, and decoded piece by piece into a
 * sink from `open`, one per attempt, written at the pace it takes them (the answer
 * is never whole in memory, in base64 or as text); the SDK parses the rest
 * (ReportFormat, GeneratedTime, errors: still the SDK's). `onContent` is given what
 * the sink made of a whole Content, at each attempt that had one: the last call is
 * the answer's the SDK returns. The output's Content is then empty: its bytes went
 * to the sink. Only a 200 answer with a Content element is touched.
 */
export function withContentAside<T>(command: GetCredentialReportCommand, open: () => ContentSink<T>, onContent: (content: T) => void): GetCredentialReportCommand {
  let aside = false;
  // Around everything: tells the output its Content went aside.
  command.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      if (aside) (result.output as { Content?: Uint8Array }).Content = new Uint8Array(0);
      return result;
    },
    { step: 'initialize', name: 'iamKeyExportContentAsideOutput' },
  );
  // Inside the deserializer: sees the raw answer before it is parsed.
  const inner: DeserializeMiddleware<GetCredentialReportCommandInput, GetCredentialReportCommandOutput> = (next) => async (args) => {
    // Each attempt says for itself whether its answer's Content went aside.
    aside = false;
    const result = await next(args);
    const response = result.response as { statusCode?: number; body?: unknown };
    if (response.statusCode !== 200 || response.body === undefined || response.body === null) return result;
    const split = new ContentSplitter();
    let sink: ContentSink<T> | undefined;
    try {
      for await (const chunk of chunksOf(response.body)) {
        const piece = split.push(chunk);
        if (split.entered) sink ??= open();
        if (piece) await sink!.write(piece);
      }
      response.body = split.end();
      if (split.found) onContent(await sink!.end());
    } catch (err) {
      // Cut midway (the SDK may try again, with a sink of its own), or no report.
      await sink?.abort(err);
      throw err;
    }
    aside = split.found;
    return result;
  };
  command.middlewareStack.addRelativeTo(inner, { relation: 'after', toMiddleware: 'deserializerMiddleware', name: 'iamKeyExportContentAside' });
  return command;
}

/** Splits an answer streaming in: the Content element's base64, decoded, handed back by `push`; the rest kept. */
class ContentSplitter {
  #state: 'before' | 'inside' | 'after' = 'before';
  /** Before: the answer so far; after: what follows </Content>. */
  #kept: Buffer[] = [];
  #head = Buffer.alloc(0);
  /** Inside: bytes not yet decoded (a partial 4-character group, or what may begin </Content>). */
  #pending = '';

  /** The Content element has begun (maybe ended too). */
  get entered(): boolean {
    return this.#state !== 'before';
  }

  /** The Content element is whole. */
  get found(): boolean {
    return this.#state === 'after';
  }

  /** Takes the next bytes of the answer; gives back the Content they complete, decoded, if any. */
  push(chunk: Buffer): Buffer | undefined {
    if (this.#state === 'after') {
      this.#kept.push(chunk);
      return undefined;
    }
    if (this.#state === 'before') {
      // The part before <Content> is small (the element comes first): searched whole.
      this.#head = Buffer.concat([this.#head, chunk]);
      const open = this.#head.indexOf(CONTENT_OPEN);
      if (open < 0) return undefined;
      this.#state = 'inside';
      const rest = this.#head.subarray(open + CONTENT_OPEN.length);
      this.#head = this.#head.subarray(0, open);
      chunk = rest;
    }
    const text = this.#pending + chunk.toString('latin1');
    const close = text.indexOf('</Content>');
    if (close >= 0) {
      this.#state = 'after';
      this.#kept.push(Buffer.from(text.slice(close + CONTENT_CLOSE.length), 'latin1'));
      return decoded(text.slice(0, close).replace(SPACE, ''));
    }
    // Keep what could be the start of </Content>, and a partial group of 4.
    const safe = text.length - (CONTENT_CLOSE.length - 1);
    if (safe <= 0) {
      this.#pending = text;
      return undefined;
    }
    const b64 = text.slice(0, safe).replace(SPACE, '');
    const whole = b64.length - (b64.length % 4);
    this.#pending = b64.slice(whole) + text.slice(safe);
    return decoded(b64.slice(0, whole));
  }

  /** The answer without its Content element, for the SDK to parse. */
  end(): Buffer {
    if (this.#state === 'before') return this.#head;
    // An answer that ends inside Content is not a report: the caller asks again.
    if (this.#state === 'inside') throw Object.assign(new Error('GetCredentialReport answer ended inside its Content'), { name: 'ReportNotPresent', $fault: 'client' });
    return Buffer.concat([this.#head, ...this.#kept]);
  }
}

/** The bytes of base64 text, or undefined when there are none. */
function decoded(b64: string): Buffer | undefined {
  const bytes = Buffer.from(b64, 'base64');
  return bytes.length > 0 ? bytes : undefined;
}

/** The chunks of a raw answer (a Node stream from the SDK's HTTP handler, or bytes). */
async function* chunksOf(body: unknown): AsyncGenerator<Buffer> {
  if (body instanceof Uint8Array) {
    yield Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    return;
  }
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) yield typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}
