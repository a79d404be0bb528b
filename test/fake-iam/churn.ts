/**
 * Seeded random churn: `count` mutations of chosen kinds, aimed at users and
 * keys that exist when each is applied. Everything is drawn from the churn's
 * own seed, never from the fake's other streams, so the same seed on the same
 * account state applies the same mutations (only "now" dates follow the clock).
 */
import type { FakeUser } from './data.ts';
import { SERVICES, REGIONS } from './data.ts';
import { FakeIamMutationError, MUTATION_KINDS, STRUCTURAL_KINDS, applyMutation, type Mutation, type MutationKind, type MutationResult } from './mutations.ts';
import { intBetween, pick, streamFor, type Random } from './random.ts';
import type { AccountStore } from './store.ts';

export interface ChurnOptions {
  readonly seed: number;
  /** How many mutations to apply; fewer when none of the kinds has a target left. */
  readonly count: number;
  /** The kinds to draw from, uniformly; default every kind that changes a listing (all but `useKey`). */
  readonly kinds?: readonly MutationKind[];
}

const MAX_CHURN = 1_000_000;
const NEEDS_USER: readonly MutationKind[] = ['deleteUser', 'renameUser', 'createKey', 'rotateKey'];
const NEEDS_KEY: readonly MutationKind[] = ['deleteKey', 'setKeyStatus', 'useKey'];

/** Checks untrusted churn options; throws FakeIamMutationError listing every problem. */
export function parseChurn(value: unknown): ChurnOptions {
  if (typeof value !== 'object' || value === null) throw new FakeIamMutationError(['churn must be an object { seed, count, kinds? }']);
  const { seed, count, kinds, ...rest } = value as Record<string, unknown>;
  const problems: string[] = Object.keys(rest).map((key) => `unknown churn field ${key}`);
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) problems.push(`churn.seed must be an integer, got ${JSON.stringify(seed)}`);
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 0 || count > MAX_CHURN) {
    problems.push(`churn.count must be an integer from 0 to ${MAX_CHURN}, got ${JSON.stringify(count)}`);
  }
  const kindsOk = kinds === undefined || (Array.isArray(kinds) && kinds.length > 0 && kinds.every((kind) => (MUTATION_KINDS as unknown[]).includes(kind)));
  if (!kindsOk) problems.push(`churn.kinds must be a non-empty list of ${MUTATION_KINDS.join(', ')}, got ${JSON.stringify(kinds)}`);
  if (problems.length > 0) throw new FakeIamMutationError(problems);
  return { seed: seed as number, count: count as number, ...(kinds === undefined ? {} : { kinds: kinds as MutationKind[] }) };
}

/**
 * A user with at least one key, found from a random start by walking on in
 * listing order: constant time when keys are common, and never a copy of
 * every key id, so churn stays cheap on a large account.
 */
function userWithKeys(store: AccountStore, random: Random): FakeUser | undefined {
  const start = intBetween(random, 0, store.users.length - 1);
  for (let step = 0; step < store.users.length; step++) {
    const user = store.users[(start + step) % store.users.length] as FakeUser;
    if ((store.keysByUser.get(user.userName)?.length ?? 0) > 0) return user;
  }
  return undefined;
}

/** Whether a mutation of `kind` has something to act on. */
function hasTarget(store: AccountStore, kind: MutationKind): boolean {
  if (NEEDS_USER.includes(kind)) return store.users.length > 0;
  if (NEEDS_KEY.includes(kind)) return store.keysById.size > 0;
  return true;
}

/** The next mutation of `kind`, which `hasTarget`; undefined only if the indexes disagree. */
function draw(store: AccountStore, kind: MutationKind, random: Random): Mutation | undefined {
  const anyUser = (): FakeUser => pick(random, store.users);
  switch (kind) {
    case 'deleteUser':
      return { kind, userName: anyUser().userName };
    case 'createUser':
      return { kind, keys: intBetween(random, 0, 2) };
    case 'renameUser':
      return { kind, userName: anyUser().userName };
    case 'createKey':
      return { kind, userName: anyUser().userName };
    case 'rotateKey':
      return { kind, userName: anyUser().userName };
    case 'deleteKey':
    case 'setKeyStatus':
    case 'useKey': {
      const user = userWithKeys(store, random);
      if (!user) return undefined;
      const key = pick(random, store.keysByUser.get(user.userName) ?? []);
      if (kind === 'deleteKey') return { kind, accessKeyId: key.accessKeyId };
      // A use now, of a service in a region, as the generated uses are.
      if (kind === 'useKey') return { kind, accessKeyId: key.accessKeyId, service: pick(random, SERVICES), region: pick(random, REGIONS) };
      // A status change always changes something: Active keys go Inactive, others come back.
      return { kind, accessKeyId: key.accessKeyId, status: key.status === 'Active' ? 'Inactive' : 'Active' };
    }
  }
}

/** Applies seeded random mutations; returns what each did, in order. */
export function churn(store: AccountStore, options: ChurnOptions): MutationResult[] {
  const random = streamFor(options.seed, 'churn');
  const kinds = options.kinds ?? STRUCTURAL_KINDS;
  const applied: MutationResult[] = [];
  while (applied.length < options.count) {
    const possible = kinds.filter((kind) => hasTarget(store, kind));
    if (possible.length === 0) break;
    const mutation = draw(store, pick(random, possible), random);
    if (!mutation) break;
    applied.push(applyMutation(store, mutation, random));
  }
  return applied;
}
