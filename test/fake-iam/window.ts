/**
 * Ground truth for a snapshot taken while IAM changes: which keys existed at
 * some moment of a window, and which existed throughout it.
 *
 * Invariants (the store calls in after every change, so they hold between calls):
 * - `#created` holds exactly the keys created since the window started, deleted
 *   since or not; every other key that exists now existed at the start.
 * - `#gone` holds exactly the keys that existed at some moment of the window and
 *   are deleted now, each with its owner's latest name and fate rank.
 * - `#renamed` holds the ids of users renamed since the window started.
 * So the window's keys are the current keys plus `#gone`, and a key is whole
 * exactly when it exists now and is not in `#created`: key ids are never reused,
 * so a key that exists now was never deleted.
 *
 * Only changes are recorded, never a copy of the account, so starting a window
 * costs nothing whatever the size of the account.
 */
import type { FakeKey, FakeUser, KeyStatus } from './data.ts';

/** One key of the window, as `windowTruth()` reports it. */
export interface WindowKey {
  readonly accessKeyId: string;
  readonly userId: string;
  /** The owner's latest name: after a rename the new one; after a deletion the last it had. */
  readonly userName: string;
  /** The key's latest status. */
  readonly status: KeyStatus;
  /**
   * Existed at the window's start and still exists: never deleted, nor its user.
   * A complete snapshot of the window holds every whole key exactly once.
   */
  readonly whole: boolean;
  /**
   * Its user was renamed during the window. A single ListUsers pass may miss
   * such a user (renamed to a name behind the cursor) or list it twice
   * (renamed to a name ahead of it), as it may with IAM.
   */
  readonly userRenamed: boolean;
}

interface GoneKey {
  readonly userId: string;
  userName: string;
  readonly status: KeyStatus;
  readonly fateRank: number;
}

/** What the tracker reads from the account when asked for the truth. */
export interface WindowSource {
  readonly users: readonly FakeUser[];
  readonly keysByUser: ReadonlyMap<string, readonly FakeKey[]>;
}

/** Changes to one account since its window started. */
export class WindowTracker {
  #created = new Set<string>();
  #gone = new Map<string, GoneKey>();
  #renamed = new Set<string>();

  /** Starts a new window at the current state. */
  start(): void {
    this.#created = new Set();
    this.#gone = new Map();
    this.#renamed = new Set();
  }

  keyCreated(key: FakeKey): void {
    this.#created.add(key.accessKeyId);
  }

  keyDeleted(key: FakeKey, owner: FakeUser): void {
    this.#gone.set(key.accessKeyId, { userId: owner.userId, userName: owner.userName, status: key.status, fateRank: owner.fateRank });
  }

  userRenamed(userId: string, newName: string): void {
    this.#renamed.add(userId);
    // Keys already deleted still report their owner's latest name.
    for (const gone of this.#gone.values()) if (gone.userId === userId) gone.userName = newName;
  }

  /**
   * Every key of the window whose owner `readable` accepts (by fate rank), in
   * code-unit order of user name, then key id.
   */
  truth(source: WindowSource, readable: (fateRank: number) => boolean): WindowKey[] {
    const keys: WindowKey[] = [];
    for (const user of source.users) {
      if (!readable(user.fateRank)) continue;
      for (const key of source.keysByUser.get(user.userName) ?? []) {
        keys.push({
          accessKeyId: key.accessKeyId,
          userId: user.userId,
          userName: user.userName,
          status: key.status,
          whole: !this.#created.has(key.accessKeyId),
          userRenamed: this.#renamed.has(user.userId),
        });
      }
    }
    for (const [accessKeyId, gone] of this.#gone) {
      if (!readable(gone.fateRank)) continue;
      keys.push({ accessKeyId, userId: gone.userId, userName: gone.userName, status: gone.status, whole: false, userRenamed: this.#renamed.has(gone.userId) });
    }
    return keys.sort((a, b) => (a.userName < b.userName ? -1 : a.userName > b.userName ? 1 : a.accessKeyId < b.accessKeyId ? -1 : a.accessKeyId > b.accessKeyId ? 1 : 0));
  }
}
