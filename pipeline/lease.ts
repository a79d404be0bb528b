/**
 * The lease: at most one run works on a staged snapshot at a time. Two overlapping
 * runs (a cron job that outlived its period, a rescheduled pod next to a frozen
 * one) would otherwise interleave one snapshot.
 *
 * It is one object in the store (`_staging/<id>/lease.json`) that names its holder
 * and when it expires, changed only by conditional writes:
 *   acquire   create it if absent (ifNoneMatch) — one creator wins;
 *   take over replace a stale one at the version read (ifMatch) — one contender wins;
 *   renew     replace our own at our version (ifMatch), every RENEW_MS;
 *   release   delete our own at our version.
 * The loser of any of these learns it at once (PreconditionFailed).
 *
 * Stale means expired (not renewed within TTL_MS), or, on the same machine, held
 * by a process that is gone: its pid is not running, or is running but started at
 * another moment (a container restarted as PID 1 finds "its own" pid alive).
 *
 * Invariants: a holder learns it lost the lease at its next renewal (the version
 * moved) and then aborts `signal`; `assertHeld` refuses when a renewal is overdue,
 * so a run frozen past its TTL stops before it commits. The checkpoint's own
 * compare-and-swap (checkpoint.ts) is the fence that makes a commit by an
 * overtaken holder impossible even between those checks.
 */
import { randomBytes } from 'node:crypto';
import { ExportError } from './errors.ts';
import { goneBecause, probe, selfStamp, type ProcessStamp } from './liveness.ts';
import { PreconditionFailed, type Store } from './store/store.ts';

/** A lease not renewed for this long belongs to a run that is gone. */
export const LEASE_TTL_MS = 30_000;
/** How often a live run renews its lease. */
export const LEASE_RENEW_MS = 5_000;
export const LEASE_FILE = 'lease.json';

/** What the lease object says. */
export interface LeaseHolder extends ProcessStamp {
  readonly run_id: string;
  readonly acquired_at: string;
  readonly renewed_at: string;
  readonly expires_at: string;
}

/** Who this process is, as a lease holder. */
export interface Identity {
  readonly runId: string;
  readonly stamp: ProcessStamp;
  /** Whether a pid runs on this machine, and its start time (injected by tests). */
  readonly probe: (pid: number) => string | null | 'gone';
}

/** This process, with a fresh run id. */
export function currentIdentity(): Identity {
  return { runId: randomBytes(4).toString('hex'), stamp: selfStamp(), probe };
}

export interface LeaseOptions {
  readonly identity?: Identity;
  readonly now?: () => number;
  readonly ttlMs?: number;
  readonly renewMs?: number;
}

/** Why a holder is stale, or undefined when it must be presumed alive. */
export function staleness(holder: LeaseHolder, me: Identity, now: number): string | undefined {
  if (now > Date.parse(holder.expires_at)) return 'expired';
  return goneBecause(holder, me.stamp, me.probe);
}

function parseHolder(body: Buffer): LeaseHolder | undefined {
  try {
    const h = JSON.parse(body.toString('utf8')) as LeaseHolder;
    return typeof h.run_id === 'string' && typeof h.host === 'string' && typeof h.pid === 'number' && !Number.isNaN(Date.parse(h.expires_at)) ? h : undefined;
  } catch {
    return undefined;
  }
}

/** A lease this run holds. */
export class Lease {
  readonly #store: Store;
  readonly key: string;
  readonly #me: Identity;
  readonly #now: () => number;
  readonly #ttl: number;
  readonly #acquiredAt: string;
  #version: string;
  #renewedAt: number;
  #timer: NodeJS.Timeout | undefined;
  #renewing: Promise<void> | undefined;
  #lost: ExportError | undefined;
  readonly #abort = new AbortController();

  private constructor(store: Store, key: string, me: Identity, now: () => number, ttl: number, version: string, renewedAt: number) {
    this.#store = store;
    this.key = key;
    this.#me = me;
    this.#now = now;
    this.#ttl = ttl;
    this.#version = version;
    this.#renewedAt = renewedAt;
    this.#acquiredAt = new Date(renewedAt).toISOString();
  }

  /** The run id of this holder (part names carry it, so two holders never write the same file). */
  get runId(): string {
    return this.#me.runId;
  }

  /** Aborted once the lease is lost. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * Takes the lease at `key`, or throws OUTPUT_LOCKED naming the live holder.
   * Starts renewing it in the background.
   */
  static async acquire(store: Store, key: string, options: LeaseOptions = {}): Promise<Lease> {
    const me = options.identity ?? currentIdentity();
    const now = options.now ?? Date.now;
    const ttl = options.ttlMs ?? LEASE_TTL_MS;
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await store.read(key);
      const holder = current ? parseHolder(current.body) : undefined;
      if (current && holder && staleness(holder, me, now()) === undefined) throw locked(store, key, holder, now());
      const t = now();
      const body = JSON.stringify(holderOf(me, t, t, ttl));
      try {
        // An unreadable lease (a crash mid-write on a store without atomic writes) is stale too.
        const version = await store.write(key, body, current ? { ifMatch: current.version } : { ifNoneMatch: true });
        const lease = new Lease(store, key, me, now, ttl, version, t);
        lease.#start(options.renewMs ?? LEASE_RENEW_MS);
        return lease;
      } catch (err) {
        if (!(err instanceof PreconditionFailed)) throw err;
        // Another contender won the create or the takeover: read who, and refuse (or retry if it is gone already).
      }
    }
    const after = await store.read(key);
    const holder = after ? parseHolder(after.body) : undefined;
    throw holder ? locked(store, key, holder, now()) : new ExportError('OUTPUT_LOCKED', `another run is taking ${store.describe(key)} at this moment; rerun later`, { file: store.describe(key) });
  }

  #start(renewMs: number): void {
    this.#timer = setInterval(() => {
      this.#renewing ??= this.renew().finally(() => (this.#renewing = undefined));
    }, renewMs);
    this.#timer.unref();
  }

  /** Renews the lease now; on loss, records it and aborts `signal`. */
  async renew(): Promise<void> {
    if (this.#lost) return;
    const t = this.#now();
    try {
      this.#version = await this.#store.write(this.key, JSON.stringify(holderOf(this.#me, Date.parse(this.#acquiredAt), t, this.#ttl)), { ifMatch: this.#version });
      this.#renewedAt = t;
    } catch (err) {
      if (err instanceof PreconditionFailed) this.#lose('another run took it over');
      // A passing store error: the next tick retries; assertHeld refuses once the TTL ran out.
      else if (this.#now() - this.#renewedAt >= this.#ttl) this.#lose('it could not be renewed before it expired');
    }
  }

  #lose(why: string): void {
    if (this.#lost) return;
    this.#lost = new ExportError('LEASE_LOST', `lost the lease ${this.#store.describe(this.key)}: ${why}; this run stopped without committing more (the checkpoint is intact, rerun to resume)`, {
      file: this.#store.describe(this.key),
    });
    if (this.#timer) clearInterval(this.#timer);
    this.#abort.abort(this.#lost);
  }

  /** Throws LEASE_LOST unless the lease is still ours and was renewed within its TTL. */
  assertHeld(): void {
    if (!this.#lost && this.#now() - this.#renewedAt >= this.#ttl) this.#lose('it was not renewed within its TTL (the process was frozen or the store unreachable)');
    if (this.#lost) throw this.#lost;
  }

  /**
   * Stops renewing (and waits for a renewal in flight), keeping the lease: for
   * the last step of a holder, removing the folder the lease lives in, which a
   * renewal writing into it at that moment would race.
   */
  async quiesce(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#renewing?.catch(() => undefined);
  }

  /** Stops renewing and deletes the lease if it is still ours. */
  async release(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#renewing?.catch(() => undefined);
    if (this.#lost) return;
    this.#lost = new ExportError('LEASE_LOST', 'the lease was released');
    await this.#store.delete(this.key, { ifMatch: this.#version }).catch((err: unknown) => {
      if (!(err instanceof PreconditionFailed)) throw err;
    });
  }
}

function holderOf(me: Identity, acquired: number, renewed: number, ttl: number): LeaseHolder {
  return {
    run_id: me.runId,
    ...me.stamp,
    acquired_at: new Date(acquired).toISOString(),
    renewed_at: new Date(renewed).toISOString(),
    expires_at: new Date(renewed + ttl).toISOString(),
  };
}

function locked(store: Store, key: string, holder: LeaseHolder, now: number): ExportError {
  const age = Math.max(0, Math.round((now - Date.parse(holder.acquired_at)) / 1000));
  const expires = Math.max(0, Math.ceil((Date.parse(holder.expires_at) - now) / 1000));
  return new ExportError(
    'OUTPUT_LOCKED',
    `another run (pid ${holder.pid} on ${holder.host}, running for ${age} s) holds ${store.describe(key)}; this is temporary: rerun later (its lease expires in ${expires} s, at ${holder.expires_at}, unless it renews it: it does every ${LEASE_RENEW_MS / 1000} s while it runs)`,
    { file: store.describe(key) },
  );
}
