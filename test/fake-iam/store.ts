/**
 * One account's IAM state, changeable while the fake runs. The actions read it
 * through the `Dataset` view; mutations change it only through the methods
 * below, which keep the indexes, the change counter and the window in step.
 *
 * Invariants, true between any two method calls:
 * - `users` is in code-unit order of userName; `usersByName` and `usersById`
 *   index exactly those users; names are unique ignoring case (as in IAM).
 * - `keysByUser` has one list per user, under its current name, in
 *   ListAccessKeys order (`compareKeys`); `keysById` indexes exactly the keys in
 *   those lists, and each key carries its owner's current name.
 * - No user id or key id is issued twice, not even after a deletion.
 * - `generation` grows by one with every change a listing can see (not with a
 *   recorded use); markers carry it, which is how stale ones are recognised.
 * - The window tracker has been told of every key created or deleted and every
 *   user renamed since its window started.
 * Records are never changed in place: a change replaces the user or key object,
 * so a caller holding an old one holds a consistent old view.
 */
import { SECOND, compareCodeUnits, compareKeys, uniqueId, uniqueName, type Dataset, type FakeKey, type FakeUser, type KeyStatus, type LastUsed } from './data.ts';
import type { Random } from './random.ts';
import { CredentialReports } from './report.ts';
import { WindowTracker } from './window.ts';

/** The instant `ms` rounded down to a whole second, as IAM stores creation dates. */
export const wholeSecond = (ms: number): Date => new Date(Math.floor(ms / SECOND) * SECOND);

/** The first index of `items` whose element does not sort before `probe`. */
function lowerBound<T>(items: readonly T[], probe: T, compare: (a: T, b: T) => number): number {
  let low = 0;
  let high = items.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compare(items[mid] as T, probe) < 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

const byName = (a: FakeUser, b: FakeUser): number => compareCodeUnits(a.userName, b.userName);

export class AccountStore implements Dataset {
  readonly accountId: string;
  readonly fateScale: number;
  readonly users: FakeUser[];
  readonly usersByName: Map<string, FakeUser>;
  readonly usersById: Map<string, FakeUser>;
  readonly keysByUser: Map<string, FakeKey[]>;
  readonly keysById: Map<string, FakeKey>;
  readonly window = new WindowTracker();
  /** IAM keeps one credential report per account. */
  readonly reports = new CredentialReports();
  readonly #now: () => number;
  readonly #ids: Set<string>;
  readonly #lowerNames: Set<string>;
  #generation = 0;

  /** Takes over a generated dataset (its lists are copied, never shared). @param now wall-clock milliseconds */
  constructor(dataset: Dataset, now: () => number = Date.now) {
    this.accountId = dataset.accountId;
    this.fateScale = dataset.fateScale;
    this.users = dataset.users.slice();
    this.usersByName = new Map(dataset.usersByName);
    this.usersById = new Map(this.users.map((user) => [user.userId, user]));
    this.keysByUser = new Map(this.users.map((user) => [user.userName, (dataset.keysByUser.get(user.userName) ?? []).slice()]));
    this.keysById = new Map(dataset.keysById);
    this.#now = now;
    this.#ids = new Set([...this.usersById.keys(), ...this.keysById.keys()]);
    this.#lowerNames = new Set(this.users.map((user) => user.userName.toLowerCase()));
  }

  /** Changes so far that a listing can see; markers record it. */
  get generation(): number {
    return this.#generation;
  }

  /** Wall-clock milliseconds, the clock new keys and users are dated by. */
  now(): number {
    return this.#now();
  }

  /** Whether a user of that name exists, ignoring case as IAM does. */
  nameTaken(userName: string): boolean {
    return this.#lowerNames.has(userName.toLowerCase());
  }

  /** A name no current user has, drawn like the generated ones; `addUser` takes it. */
  freshName(random: Random): string {
    // A read-only view: the name is only taken once a user holds it.
    return uniqueName(random, { has: (name) => this.#lowerNames.has(name), add: () => this.#lowerNames });
  }

  /** A user or key id never issued in this account. */
  freshId(random: Random, prefix: 'AIDA' | 'AKIA'): string {
    return uniqueId(random, prefix, prefix === 'AIDA' ? 17 : 16, this.#ids);
  }

  /** Adds a user with no keys; the name must be free (`nameTaken`). */
  addUser(userName: string, path: string, fateRank: number, random: Random): FakeUser {
    const user: FakeUser = {
      userName,
      userId: this.freshId(random, 'AIDA'),
      path,
      arn: `arn:aws:iam::${this.accountId}:user${path}${userName}`,
      createDate: wholeSecond(this.#now()),
      fateRank,
    };
    this.users.splice(lowerBound(this.users, user, byName), 0, user);
    this.usersByName.set(userName, user);
    this.usersById.set(user.userId, user);
    this.keysByUser.set(userName, []);
    this.#lowerNames.add(userName.toLowerCase());
    this.#generation++;
    return user;
  }

  /** Deletes a user and its keys; returns the keys deleted. */
  removeUser(user: FakeUser): FakeKey[] {
    const keys = this.keysByUser.get(user.userName) ?? [];
    for (const key of keys) {
      this.keysById.delete(key.accessKeyId);
      this.window.keyDeleted(key, user);
    }
    this.users.splice(lowerBound(this.users, user, byName), 1);
    this.usersByName.delete(user.userName);
    this.usersById.delete(user.userId);
    this.keysByUser.delete(user.userName);
    this.#lowerNames.delete(user.userName.toLowerCase());
    this.#generation++;
    return keys;
  }

  /** Gives a user a new, free name: same id, the ARN follows, the keys stay. */
  renameUser(user: FakeUser, newName: string): FakeUser {
    const renamed: FakeUser = { ...user, userName: newName, arn: `arn:aws:iam::${this.accountId}:user${user.path}${newName}` };
    const keys = (this.keysByUser.get(user.userName) ?? []).map((key): FakeKey => ({ ...key, userName: newName }));
    this.users.splice(lowerBound(this.users, user, byName), 1);
    this.users.splice(lowerBound(this.users, renamed, byName), 0, renamed);
    this.usersByName.delete(user.userName);
    this.usersByName.set(newName, renamed);
    this.usersById.set(user.userId, renamed);
    this.keysByUser.delete(user.userName);
    this.keysByUser.set(newName, keys);
    for (const key of keys) this.keysById.set(key.accessKeyId, key);
    this.#lowerNames.delete(user.userName.toLowerCase());
    this.#lowerNames.add(newName.toLowerCase());
    this.window.userRenamed(user.userId, newName);
    this.#generation++;
    return renamed;
  }

  /** Adds a key to a user; `createDate` defaults to now, rounded down to the second. */
  addKey(user: FakeUser, random: Random, createDate: Date = wholeSecond(this.#now()), status: KeyStatus = 'Active'): FakeKey {
    const key: FakeKey = { userName: user.userName, accessKeyId: this.freshId(random, 'AKIA'), status, createDate };
    const keys = this.#keysOf(user);
    keys.splice(lowerBound(keys, key, compareKeys), 0, key);
    this.keysById.set(key.accessKeyId, key);
    this.window.keyCreated(key);
    this.#generation++;
    return key;
  }

  /** Deletes one key. */
  removeKey(key: FakeKey): void {
    const owner = this.#ownerOf(key);
    const keys = this.#keysOf(owner);
    keys.splice(lowerBound(keys, key, compareKeys), 1);
    this.keysById.delete(key.accessKeyId);
    this.window.keyDeleted(key, owner);
    this.#generation++;
  }

  /** Replaces a key's status. */
  setStatus(key: FakeKey, status: KeyStatus): FakeKey {
    const changed = this.#replaceKey(key, { ...key, status });
    this.#generation++;
    return changed;
  }

  /** Records a use. No listing shows it, so markers stay fresh. */
  setLastUsed(key: FakeKey, lastUsed: LastUsed): FakeKey {
    return this.#replaceKey(key, { ...key, lastUsed });
  }

  /** The user owning `key`. */
  ownerOf(key: FakeKey): FakeUser {
    return this.#ownerOf(key);
  }

  #ownerOf(key: FakeKey): FakeUser {
    const owner = this.usersByName.get(key.userName);
    if (!owner) throw new Error(`fake-iam: key ${key.accessKeyId} has no owner ${key.userName}`);
    return owner;
  }

  #keysOf(user: FakeUser): FakeKey[] {
    const keys = this.keysByUser.get(user.userName);
    if (!keys) throw new Error(`fake-iam: user ${user.userName} has no key list`);
    return keys;
  }

  #replaceKey(key: FakeKey, changed: FakeKey): FakeKey {
    const keys = this.#keysOf(this.#ownerOf(key));
    keys[lowerBound(keys, key, compareKeys)] = changed;
    this.keysById.set(key.accessKeyId, changed);
    return changed;
  }
}
