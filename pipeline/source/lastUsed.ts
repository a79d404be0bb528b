/**
 * Where each key's last use comes from (`--last-used`): the credential report
 * (report.ts), GetAccessKeyLastUsed, or nowhere (off). The lookups go through the
 * run's IAM client — the same retry strategy and rate gate as the listing — with
 * their own bound on calls in flight.
 *
 * Per-key outcomes: a key deleted since it was listed (NoSuchEntity) keeps its row
 * with no last use and is counted; a denial of one key after others succeeded is
 * the same; denials of the first min(20, all) lookups with none succeeding mean a
 * missing permission: fatal. Throttling that outlived the retries stops the run
 * resumably, like the listing's.
 */
import { GetAccessKeyLastUsedCommand, type IAMClient } from '@aws-sdk/client-iam';
import pLimit from 'p-limit';
import { awsErrorName, classifyFatal, ExportError, isDenied, isThrottle, type CallSite } from '../errors.ts';
import type { AccessKeyRecord } from '../schema.ts';
import type { LastUse, ReportIndex } from './report.ts';

export { LAST_USED_MODES, type LastUsedMode } from '../config.ts';
import type { LastUsedMode } from '../config.ts';

/** Where a record's last use came from; `vanished`/`denied`: the lookup found no key, or was refused. */
export type LastUseSource = 'report' | 'api' | 'off' | 'vanished' | 'denied';

export interface Resolved {
  readonly lastUse: LastUse | null;
  readonly source: LastUseSource;
}

/** Why the run must stop instead of enriching more keys. */
export class LookupHalt extends Error {
  override readonly name = 'LookupHalt';
}

/** Lookups of the first this-many keys, all denied and none answered, mean a missing permission. */
const SYSTEMIC_SAMPLE = 20;

export interface ResolverOptions {
  readonly mode: LastUsedMode;
  readonly report: ReportIndex | undefined;
  readonly client: IAMClient;
  /** GetAccessKeyLastUsed calls in flight at most. */
  readonly concurrency: number;
  readonly signal: AbortSignal;
  readonly site: Omit<CallSite, 'what' | 'permission'>;
  readonly onFatal: (error: ExportError) => void;
  readonly onThrottled: () => void;
}

/** Resolves the last use of records, one at a time or many at once. */
export class LastUsedResolver {
  readonly #o: ResolverOptions;
  readonly #limit: ReturnType<typeof pLimit>;
  #answered = 0;
  #denied = 0;
  #systemic = false;

  constructor(o: ResolverOptions) {
    this.#o = o;
    this.#limit = pLimit(Math.max(1, o.concurrency));
  }

  /** The last use of `record`'s key; throws LookupHalt when the run must stop (it was told why). */
  async resolve(record: AccessKeyRecord): Promise<Resolved> {
    if (this.#o.mode === 'off') return { lastUse: null, source: 'off' };
    if (this.#o.mode === 'report' && this.#o.report) {
      const found = this.#o.report.lookup(record);
      if ('hit' in found) return { lastUse: found.hit, source: 'report' };
    }
    return this.#limit(() => this.#lookup(record));
  }

  /** `userName`'s keys are all resolved: its row of the report is not needed any more. */
  forget(userName: string): void {
    this.#o.report?.forget(userName);
  }

  async #lookup(record: AccessKeyRecord): Promise<Resolved> {
    const o = this.#o;
    if (o.signal.aborted) throw new LookupHalt('stopped');
    try {
      const r = await o.client.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: record.access_key_id }), { abortSignal: o.signal });
      this.#answered++;
      const used = r.AccessKeyLastUsed;
      const text = (v: string | undefined) => (v === undefined || v === 'N/A' || v === '' ? null : v);
      return { lastUse: { date: used?.LastUsedDate ?? null, service: text(used?.ServiceName), region: text(used?.Region) }, source: 'api' };
    } catch (err) {
      if (o.signal.aborted) throw new LookupHalt('stopped');
      const name = awsErrorName(err);
      if (name === 'NoSuchEntity' || name === 'NoSuchEntityException') return { lastUse: null, source: 'vanished' };
      if (isThrottle(err)) {
        o.onThrottled();
        throw new LookupHalt('throttled');
      }
      if (isDenied(err)) {
        this.#denied++;
        if (this.#systemic) throw new LookupHalt('denied');
        if (this.#answered === 0 && this.#denied >= SYSTEMIC_SAMPLE) {
          this.#systemic = true;
          o.onFatal(
            new ExportError('SOURCE_DENIED', `GetAccessKeyLastUsed was denied (${name}) for every one of the first ${this.#denied} keys: the identity needs iam:GetAccessKeyLastUsed, or run with --last-used off`, {
              awsCode: name,
            }),
          );
          throw new LookupHalt('denied');
        }
        return { lastUse: null, source: 'denied' };
      }
      o.onFatal(classifyFatal(err, { ...o.site, what: `GetAccessKeyLastUsed for key ${record.access_key_id}`, permission: 'iam:GetAccessKeyLastUsed' }));
      throw new LookupHalt('fatal');
    }
  }
}
