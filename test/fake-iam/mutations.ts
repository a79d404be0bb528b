/**
 * Changes to IAM while the fake runs: what a test may ask for, checked in one
 * place (values may come from JSON over HTTP), and applied to an account.
 * Each mutation returns what it did, with the ids and names it chose, so a
 * test can follow up on a user or key it did not name itself.
 */
import { PATHS, STATUSES, type KeyStatus } from './data.ts';
import { weighted, type Random } from './random.ts';
import { wholeSecond, type AccountStore } from './store.ts';

const KEY_STATUSES = STATUSES.map(([status]) => status);

/** What a test may change. Names and ids are those IAM would show now. */
export type Mutation =
  /** Deletes a user; its keys go with it. */
  | { readonly kind: 'deleteUser'; readonly userName: string }
  /** Creates a user (a fresh unique name, a random path, no keys unless told) with `keys` keys dated now. */
  | { readonly kind: 'createUser'; readonly userName?: string; readonly path?: string; readonly keys?: number }
  /** Renames a user: same UserId, the ARN follows, the keys stay. Without `newUserName`, a fresh one. */
  | { readonly kind: 'renameUser'; readonly userName: string; readonly newUserName?: string }
  | { readonly kind: 'deleteKey'; readonly accessKeyId: string }
  /** Creates a key, by default Active and dated now (rounded down to the second). */
  | { readonly kind: 'createKey'; readonly userName: string; readonly createDate?: Date | string | number; readonly status?: KeyStatus }
  /** Deletes the user's oldest key, if any, and creates one dated now. */
  | { readonly kind: 'rotateKey'; readonly userName: string }
  | { readonly kind: 'setKeyStatus'; readonly accessKeyId: string; readonly status: KeyStatus }
  /**
   * Records a use of a key, by default now (to the second), as
   * GetAccessKeyLastUsed will report it. The credential report keeps its old
   * value until it is generated again. No listing changes, so markers stay fresh.
   */
  | { readonly kind: 'useKey'; readonly accessKeyId: string; readonly date?: Date | string | number; readonly service: string; readonly region: string };

export type MutationKind = Mutation['kind'];

export const MUTATION_KINDS: readonly MutationKind[] = ['deleteUser', 'createUser', 'renameUser', 'deleteKey', 'createKey', 'rotateKey', 'setKeyStatus', 'useKey'];

/** The kinds that change what a listing shows: churn's default. */
export const STRUCTURAL_KINDS: readonly MutationKind[] = MUTATION_KINDS.filter((kind) => kind !== 'useKey');

/** What a mutation did. */
export type MutationResult =
  | { readonly kind: 'deleteUser'; readonly userName: string; readonly userId: string; readonly deletedKeyIds: readonly string[] }
  | { readonly kind: 'createUser'; readonly userName: string; readonly userId: string; readonly path: string; readonly accessKeyIds: readonly string[] }
  | { readonly kind: 'renameUser'; readonly userId: string; readonly userName: string; readonly newUserName: string }
  | { readonly kind: 'deleteKey'; readonly accessKeyId: string; readonly userName: string; readonly userId: string }
  | { readonly kind: 'createKey'; readonly accessKeyId: string; readonly userName: string; readonly userId: string; readonly createDate: Date; readonly status: KeyStatus }
  | { readonly kind: 'rotateKey'; readonly userName: string; readonly userId: string; readonly deletedKeyId: string | null; readonly accessKeyId: string; readonly createDate: Date }
  | { readonly kind: 'setKeyStatus'; readonly accessKeyId: string; readonly userName: string; readonly status: KeyStatus; readonly previousStatus: KeyStatus }
  | { readonly kind: 'useKey'; readonly accessKeyId: string; readonly userName: string; readonly date: Date; readonly service: string; readonly region: string };

/** A mutation that is malformed or names something that does not exist; nothing was changed. */
export class FakeIamMutationError extends Error {
  override readonly name = 'FakeIamMutationError';
  readonly code = 'FAKE_IAM_MUTATION';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid fake-iam mutation: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

const USER_NAME = /^[\w+=,.@-]{1,64}$/;
/** What IAM reports as a service or region: lower-case words with digits and dashes. */
const SERVICE_OR_REGION = /^[a-z0-9-]{1,64}$/;
const USER_PATH = /^\/([\u0021-\u007e]*\/)?$/;
const MAX_NEW_KEYS = 10_000;

type Problems = string[];
type Fields = Readonly<Record<string, unknown>>;

function string(problems: Problems, fields: Fields, name: string, pattern?: RegExp): string {
  const value = fields[name];
  if (typeof value !== 'string' || (pattern && !pattern.test(value))) {
    problems.push(`${name} must be ${pattern ? `a string matching ${pattern}` : 'a string'}, got ${JSON.stringify(value)}`);
    return '';
  }
  return value;
}

function optional<T>(fields: Fields, name: string, read: () => T): T | undefined {
  return fields[name] === undefined ? undefined : read();
}

function status(problems: Problems, fields: Fields): KeyStatus {
  const value = fields.status;
  if (!(KEY_STATUSES as unknown[]).includes(value)) {
    problems.push(`status must be one of ${KEY_STATUSES.join(', ')}, got ${JSON.stringify(value)}`);
    return 'Active';
  }
  return value as KeyStatus;
}

function date(problems: Problems, fields: Fields, name: string): Date {
  const value = fields[name];
  const parsed = value instanceof Date || typeof value === 'string' || typeof value === 'number' ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(parsed.getTime())) {
    problems.push(`${name} must be a date (Date, ISO 8601 string or epoch milliseconds), got ${JSON.stringify(value)}`);
  }
  return parsed;
}

function allowOnly(problems: Problems, fields: Fields, allowed: readonly string[]): void {
  for (const key of Object.keys(fields)) if (!allowed.includes(key)) problems.push(`unknown field ${key} for ${String(fields.kind)}`);
}

/** Checks an untrusted value and returns it as a Mutation; throws FakeIamMutationError listing every problem. */
export function parseMutation(value: unknown): Mutation {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FakeIamMutationError(['a mutation must be an object with a kind']);
  const fields = value as Fields;
  const problems: Problems = [];
  let mutation: Mutation;
  switch (fields.kind) {
    case 'deleteUser':
      allowOnly(problems, fields, ['kind', 'userName']);
      mutation = { kind: 'deleteUser', userName: string(problems, fields, 'userName') };
      break;
    case 'createUser': {
      allowOnly(problems, fields, ['kind', 'userName', 'path', 'keys']);
      const userName = optional(fields, 'userName', () => string(problems, fields, 'userName', USER_NAME));
      const path = optional(fields, 'path', () => string(problems, fields, 'path', USER_PATH));
      const keys = optional(fields, 'keys', () => {
        const keys = fields.keys;
        if (typeof keys === 'number' && Number.isInteger(keys) && keys >= 0 && keys <= MAX_NEW_KEYS) return keys;
        problems.push(`keys must be an integer from 0 to ${MAX_NEW_KEYS}, got ${JSON.stringify(keys)}`);
        return 0;
      });
      mutation = { kind: 'createUser', ...(userName === undefined ? {} : { userName }), ...(path === undefined ? {} : { path }), ...(keys === undefined ? {} : { keys }) };
      break;
    }
    case 'renameUser': {
      allowOnly(problems, fields, ['kind', 'userName', 'newUserName']);
      const newUserName = optional(fields, 'newUserName', () => string(problems, fields, 'newUserName', USER_NAME));
      mutation = { kind: 'renameUser', userName: string(problems, fields, 'userName'), ...(newUserName === undefined ? {} : { newUserName }) };
      break;
    }
    case 'deleteKey':
      allowOnly(problems, fields, ['kind', 'accessKeyId']);
      mutation = { kind: 'deleteKey', accessKeyId: string(problems, fields, 'accessKeyId') };
      break;
    case 'createKey': {
      allowOnly(problems, fields, ['kind', 'userName', 'createDate', 'status']);
      const createDate = optional(fields, 'createDate', () => date(problems, fields, 'createDate'));
      const keyStatus = optional(fields, 'status', () => status(problems, fields));
      mutation = {
        kind: 'createKey',
        userName: string(problems, fields, 'userName'),
        ...(createDate === undefined ? {} : { createDate }),
        ...(keyStatus === undefined ? {} : { status: keyStatus }),
      };
      break;
    }
    case 'rotateKey':
      allowOnly(problems, fields, ['kind', 'userName']);
      mutation = { kind: 'rotateKey', userName: string(problems, fields, 'userName') };
      break;
    case 'setKeyStatus':
      allowOnly(problems, fields, ['kind', 'accessKeyId', 'status']);
      mutation = { kind: 'setKeyStatus', accessKeyId: string(problems, fields, 'accessKeyId'), status: status(problems, fields) };
      break;
    case 'useKey': {
      allowOnly(problems, fields, ['kind', 'accessKeyId', 'date', 'service', 'region']);
      const used = optional(fields, 'date', () => date(problems, fields, 'date'));
      mutation = {
        kind: 'useKey',
        accessKeyId: string(problems, fields, 'accessKeyId'),
        ...(used === undefined ? {} : { date: used }),
        service: string(problems, fields, 'service', SERVICE_OR_REGION),
        region: string(problems, fields, 'region', SERVICE_OR_REGION),
      };
      break;
    }
    default:
      throw new FakeIamMutationError([`kind must be one of ${MUTATION_KINDS.join(', ')}, got ${JSON.stringify(fields.kind)}`]);
  }
  if (problems.length > 0) throw new FakeIamMutationError(problems);
  return mutation;
}

function userNamed(store: AccountStore, userName: string) {
  const user = store.usersByName.get(userName);
  if (!user) throw new FakeIamMutationError([`no user named ${userName}`]);
  return user;
}

function keyWithId(store: AccountStore, accessKeyId: string) {
  const key = store.keysById.get(accessKeyId);
  if (!key) throw new FakeIamMutationError([`no access key ${accessKeyId}`]);
  return key;
}

function freeName(store: AccountStore, userName: string): string {
  if (store.nameTaken(userName)) throw new FakeIamMutationError([`a user named ${userName} already exists (names are unique ignoring case)`]);
  return userName;
}

/**
 * Applies a checked mutation. `random` draws whatever the mutation leaves
 * open (names, ids, paths, fate ranks), so a seeded caller gets the same
 * choices every time. Throws FakeIamMutationError before changing anything.
 */
export function applyMutation(store: AccountStore, mutation: Mutation, random: Random): MutationResult {
  switch (mutation.kind) {
    case 'deleteUser': {
      const user = userNamed(store, mutation.userName);
      const keys = store.removeUser(user);
      return { kind: 'deleteUser', userName: user.userName, userId: user.userId, deletedKeyIds: keys.map((key) => key.accessKeyId) };
    }
    case 'createUser': {
      const userName = mutation.userName === undefined ? store.freshName(random) : freeName(store, mutation.userName);
      const path = mutation.path ?? weighted(random, PATHS);
      // A new user's fate is drawn on the same scale as the generated users',
      // so it is vanished or denied with the configured probabilities.
      const user = store.addUser(userName, path, random() * store.fateScale, random);
      const accessKeyIds = Array.from({ length: mutation.keys ?? 0 }, () => store.addKey(user, random).accessKeyId);
      return { kind: 'createUser', userName, userId: user.userId, path, accessKeyIds };
    }
    case 'renameUser': {
      const user = userNamed(store, mutation.userName);
      const newUserName = mutation.newUserName === undefined ? store.freshName(random) : freeName(store, mutation.newUserName);
      store.renameUser(user, newUserName);
      return { kind: 'renameUser', userId: user.userId, userName: user.userName, newUserName };
    }
    case 'deleteKey': {
      const key = keyWithId(store, mutation.accessKeyId);
      const owner = store.ownerOf(key);
      store.removeKey(key);
      return { kind: 'deleteKey', accessKeyId: key.accessKeyId, userName: owner.userName, userId: owner.userId };
    }
    case 'createKey': {
      const user = userNamed(store, mutation.userName);
      // IAM keeps creation dates to the second; so does every date the fake serves.
      const createDate = mutation.createDate === undefined ? undefined : wholeSecond(new Date(mutation.createDate).getTime());
      const key = store.addKey(user, random, createDate, mutation.status);
      return { kind: 'createKey', accessKeyId: key.accessKeyId, userName: user.userName, userId: user.userId, createDate: key.createDate, status: key.status };
    }
    case 'rotateKey': {
      const user = userNamed(store, mutation.userName);
      const oldest = store.keysByUser.get(user.userName)?.[0];
      if (oldest) store.removeKey(oldest);
      const key = store.addKey(user, random);
      return { kind: 'rotateKey', userName: user.userName, userId: user.userId, deletedKeyId: oldest?.accessKeyId ?? null, accessKeyId: key.accessKeyId, createDate: key.createDate };
    }
    case 'setKeyStatus': {
      const key = keyWithId(store, mutation.accessKeyId);
      store.setStatus(key, mutation.status);
      return { kind: 'setKeyStatus', accessKeyId: key.accessKeyId, userName: key.userName, status: mutation.status, previousStatus: key.status };
    }
    case 'useKey': {
      const key = keyWithId(store, mutation.accessKeyId);
      const date = wholeSecond(mutation.date === undefined ? store.now() : new Date(mutation.date).getTime());
      store.setLastUsed(key, { date, service: mutation.service, region: mutation.region });
      return { kind: 'useKey', accessKeyId: key.accessKeyId, userName: key.userName, date, service: mutation.service, region: mutation.region };
    }
  }
}
