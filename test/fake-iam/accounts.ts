/**
 * The accounts the fake serves: the management account (the one the base
 * credentials belong to, with the top-level dataset) and, in organization
 * mode, the member accounts.
 *
 * Invariants:
 * - Account ids are unique; the management account is listed first, members
 *   in index order, and that order never changes.
 * - A member's data is generated the first time anything reads it, from its
 *   own seed; until then nothing can have changed it, so generating it late
 *   gives the same state as generating it at start (its window included).
 *   A thousand accounts cost a thousand small records until they are used.
 * - Account records are replaced, never changed in place.
 */
import { isAccountAlias, type AccountState, type AccountStatus, type ResolvedAccount } from './account-options.ts';
import { generateDataset, type DataOptions } from './data.ts';
import { AccountStore } from './store.ts';

/** A call named an account the fake does not serve. */
export class FakeIamAccountError extends Error {
  override readonly name = 'FakeIamAccountError';
  readonly code = 'FAKE_IAM_ACCOUNT';

  constructor(accountId: string) {
    super(`fake-iam serves no account ${JSON.stringify(accountId)}`);
  }
}

/** One account, as Organizations and IAM's account-level calls describe it. */
export interface FakeAccount {
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly status: AccountStatus;
  readonly state: AccountState;
  readonly joined: Date;
  readonly management: boolean;
  readonly alias: string | null;
  readonly rootKeysPresent: boolean;
}

/** What may change about an account while the fake runs. */
export interface AccountPatch {
  readonly status?: AccountStatus;
  readonly closed?: boolean;
  readonly alias?: string | null;
  readonly rootKeysPresent?: boolean;
}

/** The management account's own settings. */
export interface ManagementAccount {
  readonly data: DataOptions;
  readonly alias: string | null;
  readonly rootKeysPresent: boolean;
}

/** Checks an untrusted account patch; the problems, none when it is sound. */
export function patchProblems(patch: unknown): string[] {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return ['an account patch must be an object'];
  const { status, closed, alias, rootKeysPresent, ...rest } = patch as Record<string, unknown>;
  const problems = Object.keys(rest).map((key) => `unknown account field ${key}`);
  if (status !== undefined && status !== 'ACTIVE' && status !== 'SUSPENDED') problems.push(`status must be ACTIVE or SUSPENDED, got ${JSON.stringify(status)}`);
  if (closed !== undefined && typeof closed !== 'boolean') problems.push(`closed must be true or false, got ${JSON.stringify(closed)}`);
  if (rootKeysPresent !== undefined && typeof rootKeysPresent !== 'boolean') problems.push(`rootKeysPresent must be true or false, got ${JSON.stringify(rootKeysPresent)}`);
  if (alias !== undefined && alias !== null && !isAccountAlias(alias)) {
    problems.push(`alias must be null or an IAM account alias, got ${JSON.stringify(alias)}`);
  }
  return problems;
}

interface Entry {
  account: FakeAccount;
  readonly data: DataOptions;
  store?: AccountStore;
}

export class AccountDirectory {
  readonly managementId: string;
  /** Whether an organization exists (the `accounts` option was given). */
  readonly organization: boolean;
  readonly #entries = new Map<string, Entry>();
  readonly #clock: () => number;

  constructor(management: ManagementAccount, members: readonly ResolvedAccount[] | null, clock: () => number) {
    this.managementId = management.data.accountId;
    this.organization = members !== null;
    this.#clock = clock;
    this.#entries.set(this.managementId, {
      data: management.data,
      account: {
        id: this.managementId,
        name: 'management',
        email: 'aws+management@example.com',
        status: 'ACTIVE',
        state: 'ACTIVE',
        joined: new Date(Date.UTC(2016, 5, 1)),
        management: true,
        alias: management.alias,
        rootKeysPresent: management.rootKeysPresent,
      },
    });
    for (const member of members ?? []) {
      const { index: _index, users, keysPerUser, seed, ...account } = member;
      this.#entries.set(member.id, { data: { users, keysPerUser, seed, accountId: member.id }, account: { ...account, management: false } });
    }
    // Generated now: the management account's data was always made at start.
    this.store(this.managementId);
  }

  /** Every account, management first. */
  list(): FakeAccount[] {
    return [...this.#entries.values()].map((entry) => entry.account);
  }

  get size(): number {
    return this.#entries.size;
  }

  account(id: string): FakeAccount | undefined {
    return this.#entries.get(id)?.account;
  }

  /** The account's IAM state, generated on first use; undefined for an unknown id. */
  store(id: string): AccountStore | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    entry.store ??= new AccountStore(generateDataset(entry.data), this.#clock);
    return entry.store;
  }

  /** The stores generated so far (the others are still as generated). */
  *generatedStores(): IterableIterator<AccountStore> {
    for (const entry of this.#entries.values()) if (entry.store) yield entry.store;
  }

  /** Changes an account's status, alias or root keys; returns the new record. */
  update(id: string, patch: AccountPatch): FakeAccount | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    const closed = patch.closed ?? entry.account.state === 'CLOSED';
    // Reopening a closed account makes it ACTIVE unless told otherwise.
    const status = closed ? 'SUSPENDED' : (patch.status ?? (entry.account.state === 'CLOSED' ? 'ACTIVE' : entry.account.status));
    entry.account = {
      ...entry.account,
      status,
      state: closed ? 'CLOSED' : status,
      ...(patch.alias === undefined ? {} : { alias: patch.alias }),
      ...(patch.rootKeysPresent === undefined ? {} : { rootKeysPresent: patch.rootKeysPresent }),
    };
    return entry.account;
  }
}
