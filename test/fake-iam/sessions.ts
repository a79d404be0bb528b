/**
 * Who signed a request: the base credentials (any access key the fake did not
 * issue) or a session AssumeRole issued, which acts in the role's account.
 * Signatures are never checked; only the access key id in the SigV4
 * `Authorization` header (`Credential=<AKID>/<date>/<region>/<service>/aws4_request`)
 * and the session token are read.
 *
 * Invariants: every session has a unique `ASIA` access key id; a session is
 * never forgotten while the fake runs, so an expired one is told apart from
 * one the fake never issued.
 */
import { randomString, streamFor, type Random } from './random.ts';
import type { Caller } from './sts.ts';

/** Temporary credentials AssumeRole handed out. */
export interface Session {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  /** Epoch ms after which the credentials answer ExpiredToken. */
  readonly expiresAt: number;
  readonly accountId: string;
  readonly roleName: string;
  readonly sessionName: string;
  /** `AROA…`: the role's unique id, the same for every session of that role. */
  readonly roleId: string;
}

/** What a request's credentials resolve to. */
export type Signer =
  | { readonly kind: 'base' }
  | { readonly kind: 'session'; readonly session: Session }
  /** An `ASIA` key the fake never issued, or a session token that does not match. */
  | { readonly kind: 'unknown' }
  | { readonly kind: 'expired'; readonly session: Session };

const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const SECRET_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** The access key id of a SigV4 `Authorization` header; undefined when unsigned. */
export function signingKeyId(authorization: string | undefined): string | undefined {
  return /Credential=([^/,\s]+)\//.exec(authorization ?? '')?.[1];
}

/** The identity a session acts as: `arn:aws:sts::<account>:assumed-role/<role>/<session>`. */
export function sessionCaller(session: Session): Caller {
  return {
    accountId: session.accountId,
    arn: `arn:aws:sts::${session.accountId}:assumed-role/${session.roleName}/${session.sessionName}`,
    userId: `${session.roleId}:${session.sessionName}`,
  };
}

export class SessionTable {
  readonly #byKey = new Map<string, Session>();
  readonly #random: Random;

  constructor(seed: number) {
    this.#random = streamFor(seed, 'sessions');
  }

  /** Issues credentials for `roleName` in `accountId`, valid `durationSeconds` from `now`. */
  issue(accountId: string, roleName: string, sessionName: string, durationSeconds: number, now: number): Session {
    let accessKeyId: string;
    do accessKeyId = `ASIA${randomString(this.#random, UPPER_ALNUM, 16)}`;
    while (this.#byKey.has(accessKeyId));
    // A role id is stable per account and role, as IAM's is.
    const roleRandom = streamFor(Number(accountId.slice(-9)), `role:${roleName}`);
    const session: Session = {
      accessKeyId,
      secretAccessKey: randomString(this.#random, SECRET_ALPHABET, 40),
      sessionToken: `FwoGZXIvYXdzE${randomString(this.#random, SECRET_ALPHABET, 120)}`,
      expiresAt: now + durationSeconds * 1000,
      accountId,
      roleName,
      sessionName,
      roleId: `AROA${randomString(roleRandom, UPPER_ALNUM, 17)}`,
    };
    this.#byKey.set(accessKeyId, session);
    return session;
  }

  /**
   * Resolves a request's access key id and `X-Amz-Security-Token`. Anything
   * not starting with ASIA is the base credentials, as any key works there.
   */
  resolve(accessKeyId: string | undefined, sessionToken: string | undefined, now: number): Signer {
    if (accessKeyId === undefined || !accessKeyId.startsWith('ASIA')) return { kind: 'base' };
    const session = this.#byKey.get(accessKeyId);
    if (!session || sessionToken !== session.sessionToken) return { kind: 'unknown' };
    if (now >= session.expiresAt) return { kind: 'expired', session };
    return { kind: 'session', session };
  }
}
