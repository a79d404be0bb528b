/**
 * The local store: a dataset root on a file system.
 *
 * Writes are atomic and durable (temp file, fsync, rename, fsync the folder).
 * Staging is private (folders 0700, files 0600) except a publish folder inside it,
 * which is born with the modes it will have once renamed into the dataset
 * (folders 0777 and files 0644 before the umask: 0755 / 0644 under umask 022).
 *
 * Conditional writes:
 * - ifNoneMatch: the complete temp file is hard-linked to the key; link() fails
 *   when the key exists, so exactly one creator wins.
 * - ifMatch (compare-and-swap) and conditional delete: a version is the inode and
 *   the nanosecond mtime of the file (a write makes a new inode). A writer first
 *   claims the version it expects by creating `.<name>.cas.<version>` exclusively:
 *   one claimant per version. Holding the claim it checks the key is still at that
 *   version, replaces it, and drops the claim. Any other writer of that version
 *   finds the claim taken or the version gone, so each version is replaced at most
 *   once. A claim left by a crash is taken over after CLAIM_STALE_MS (at once when
 *   its process is gone from this machine); the critical section it guards lasts
 *   milliseconds, so only a writer frozen inside it for that long could be overtaken
 *   (S3's If-Match has no such window).
 *   Taking over never moves a claim: it creates the next generation of it
 *   (`.<name>.cas.<version>.g<n>`) exclusively, so of writers racing to take over the
 *   same stale claim one creates it and the others find it live. A claim is never
 *   moved or replaced, so a holder's own claim cannot vanish under it for a moment;
 *   the holder checks that its claim is still the newest before changing the key, and
 *   drops the older ones after.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, link, lstat, mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { ExportError, settleAll } from '../errors.ts';
import { faultPoint } from '../faultpoint.ts';
import { goneBecause, selfStamp, type ProcessStamp } from '../liveness.ts';
import { fsyncDir, isTempName, tempPathFor } from '../fsutil.ts';
import { PreconditionFailed, type Condition, type ReadOptions, type Store, type StoredObject, type UploadResult } from './store.ts';

/**
 * The store's own files: temp files (a write in flight, or one a crash abandoned)
 * and compare-and-swap claims. They are not keys: `list` never returns them, as S3
 * never lists an unfinished upload; they go with their folder (`deletePrefix`).
 */
function isInternal(name: string): boolean {
  return isTempName(name) || /^\..+\.cas\.[^/]+$/.test(name);
}

/**
 * A claim older than this was left by a crashed writer (on another machine; on
 * this one, a claim whose process is gone is stale at once). Shorter than the
 * shortest time a lease stays silent before it can be taken over (its TTL less one
 * renewal period: 25 s), so a run that takes over a lease never waits on a claim
 * its crashed predecessor left.
 */
export const CLAIM_STALE_MS = 20_000;

const PRIVATE_DIR = 0o700;
const PRIVATE_FILE = 0o600;
const PUBLIC_DIR = 0o777; // the umask makes it 0755
const PUBLIC_FILE = 0o644;
/** Encoders emit small chunks; gathering them into writes of this size keeps syscalls few. */
const WRITE_BATCH_BYTES = 256 * 1024;
/** What a read stream asks the file for at once, unless told. */
const READ_CHUNK_BYTES = 256 * 1024;

export interface LocalStoreOptions {
  /** Keys under this prefix are private... */
  readonly privatePrefix?: string;
  /** ...except those with a path segment matching this (the publish folder). */
  readonly publicSegment?: RegExp;
}

function versionOf(s: BigIntStats): string {
  return `${s.ino}.${s.mtimeNs}`;
}

const isErrno = (err: unknown, ...codes: string[]): boolean => codes.includes((err as NodeJS.ErrnoException)?.code ?? '');

/**
 * The claim at `path`: what identifies it (its text, a writer's stamp and nonce; for
 * what is not a file, a link left there, its inode) and its age; undefined when
 * nothing is there.
 */
async function claimAt(path: string): Promise<{ identity: string; file: boolean; mtimeMs: number } | undefined> {
  try {
    const s = await lstat(path, { bigint: true });
    const file = s.isFile();
    return { identity: file ? await readFile(path, 'utf8') : `not a file, inode ${s.ino}`, file, mtimeMs: Number(s.mtimeMs) };
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
}

/**
 * What identifies a claim whose writer is gone (same machine), or that is older than
 * CLAIM_STALE_MS, or that no writer made (not a file); undefined while it is live
 * (or not a stamp, which blocks until it is old); 'gone' when it is not there. A claim
 * that cannot be read fails with that error: it can be judged neither live nor stale.
 */
async function staleClaim(path: string): Promise<string | undefined | 'gone'> {
  const found = await claimAt(path);
  if (found === undefined) return 'gone';
  const { identity, file, mtimeMs } = found;
  if (!file || Date.now() - mtimeMs >= CLAIM_STALE_MS) return identity;
  try {
    const stamp = JSON.parse(identity) as ProcessStamp;
    return typeof stamp?.pid === 'number' && goneBecause(stamp, selfStamp()) !== undefined ? identity : undefined;
  } catch {
    return undefined;
  }
}

/** A claim this writer made: its file, its text (this process's stamp and a nonce), its generation. */
interface Claim {
  readonly path: string;
  readonly text: string;
  readonly generation: number;
}

/**
 * The claims of one version of a key, in its folder: generation 0 is
 * `.<name>.cas.<version>`, generation n `.<name>.cas.<version>.g<n>`. A claim is only
 * ever created exclusively, one generation above the newest, and never moved; the
 * newest one holds the version.
 */
class Claims {
  readonly #dir: string;
  readonly #base: string;

  constructor(dir: string, base: string) {
    this.#dir = dir;
    this.#base = base;
  }

  path(generation: number): string {
    return join(this.#dir, generation === 0 ? this.#base : `${this.#base}.g${generation}`);
  }

  /** Every claim there is, oldest first; null when the folder is gone. */
  async all(): Promise<{ generation: number; path: string }[] | null> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null;
      throw err;
    }
    const found: { generation: number; path: string }[] = [];
    for (const name of names) {
      if (!name.startsWith(this.#base)) continue;
      const rest = name.slice(this.#base.length);
      const generation = rest === '' ? 0 : /^\.g[1-9]\d{0,8}$/.test(rest) ? Number(rest.slice(2)) : undefined;
      if (generation !== undefined) found.push({ generation, path: join(this.#dir, name) });
    }
    return found.sort((a, b) => a.generation - b.generation);
  }

  /** True while `mine` is in place, with our text, and no newer claim is. */
  async holds(mine: Claim): Promise<boolean> {
    if (!(await this.#ours(mine))) return false;
    return ((await this.all()) ?? []).every((c) => c.generation <= mine.generation);
  }

  /**
   * Drops `mine` if it is still ours; while it is the newest, the older claims too:
   * each was stale when the one above it was made, and none is made below a live one.
   */
  async release(mine: Claim): Promise<void> {
    if (!(await this.#ours(mine))) return;
    const all = (await this.all()) ?? [];
    if (all.every((c) => c.generation <= mine.generation)) {
      for (const c of all) if (c.generation < mine.generation) await rm(c.path).catch(() => undefined); // gone already, or not a file: left
    }
    await removeFile(mine.path);
  }

  async #ours(mine: Claim): Promise<boolean> {
    try {
      return (await readFile(mine.path, 'utf8')) === mine.text;
    } catch {
      return false;
    }
  }
}

/** Removes a file of the store's own (a temp file, a claim) if it is there: a file where its folder should be means it is not. */
async function removeFile(path: string): Promise<void> {
  await rm(path, { force: true }).catch((err: unknown) => {
    if (!isErrno(err, 'ENOTDIR')) throw err;
  });
}

export class LocalStore implements Store {
  readonly root: string;
  readonly #privatePrefix: string;
  readonly #publicSegment: RegExp;

  constructor(root: string, options: LocalStoreOptions = {}) {
    this.root = root;
    this.#privatePrefix = options.privatePrefix ?? '_staging/';
    this.#publicSegment = options.publicSegment ?? /^publish/;
  }

  describe(key: string): string {
    return key === '' ? this.root : join(this.root, ...key.split('/'));
  }

  #private(key: string): boolean {
    if (!key.startsWith(this.#privatePrefix)) return false;
    return !key.split('/').some((segment) => this.#publicSegment.test(segment));
  }

  /** Creates the folder of `key` and its missing parents, one at a time, fsyncing each parent. */
  async #ensureDir(dirKey: string): Promise<void> {
    if (dirKey === '' || dirKey === '.') return;
    const path = this.describe(dirKey);
    try {
      if ((await stat(path)).isDirectory()) return;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    const parentKey = dirKey.includes('/') ? dirKey.slice(0, dirKey.lastIndexOf('/')) : '';
    await this.#ensureDir(parentKey);
    try {
      await mkdir(path, { mode: this.#private(dirKey + '/') ? PRIVATE_DIR : PUBLIC_DIR });
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      return;
    }
    await fsyncDir(dirname(path));
  }

  async #parentOf(key: string): Promise<string> {
    const dirKey = key.includes('/') ? key.slice(0, key.lastIndexOf('/')) : '';
    await this.#ensureDir(dirKey);
    return this.describe(key);
  }

  async read(key: string): Promise<StoredObject | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(this.describe(key), 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      // The version and the bytes come from the same open file: a rename that
      // replaces the key meanwhile cannot pair one version with other bytes.
      const s = await handle.stat({ bigint: true });
      return { body: await handle.readFile(), version: versionOf(s) };
    } finally {
      await handle.close();
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await lstat(this.describe(key));
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
  }

  /** Writes a complete, fsynced temp file next to `path`; returns it and its version. */
  async #temp(path: string, mode: number, fill: (h: FileHandle) => Promise<void>): Promise<{ tmp: string; version: string }> {
    const tmp = tempPathFor(path);
    const handle = await open(tmp, 'wx', mode);
    try {
      await fill(handle);
      await handle.sync();
      const version = versionOf(await handle.stat({ bigint: true }));
      await handle.close();
      return { tmp, version };
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async write(key: string, body: string | Uint8Array, condition?: Condition): Promise<string> {
    const path = await this.#parentOf(key);
    const mode = this.#private(key) ? PRIVATE_FILE : PUBLIC_FILE;
    const fill = async (h: FileHandle) => {
      if (body.length > 1) {
        // Two writes with a fault point between: a test can kill a save midway.
        const bytes = typeof body === 'string' ? Buffer.from(body) : body;
        const half = bytes.length >> 1;
        await h.write(bytes.subarray(0, half));
        faultPoint('store-write-midway', key);
        await h.write(bytes.subarray(half));
      } else {
        await h.writeFile(body);
      }
    };
    if (condition && 'ifNoneMatch' in condition) {
      const { tmp, version } = await this.#temp(path, mode, fill);
      try {
        await link(tmp, path);
      } catch (err) {
        if (isErrno(err, 'EEXIST')) throw new PreconditionFailed(key);
        throw err;
      } finally {
        await rm(tmp, { force: true });
      }
      await fsyncDir(dirname(path));
      return version;
    }
    const replace = async (prepared: Promise<{ tmp: string; version: string }>): Promise<string> => {
      const { tmp, version } = await prepared;
      try {
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      await fsyncDir(dirname(path));
      return version;
    };
    if (!condition) return replace(this.#temp(path, mode, fill));
    // The new bytes are written and synced while the version is claimed, not after: a
    // checkpoint save's claim and its file's fsync each took ~2.5 ms, one after the other.
    const prepared = this.#temp(path, mode, fill);
    prepared.catch(() => undefined); // met below: a failed write is the save's error
    try {
      return await this.#compareAndSwap(key, condition.ifMatch, () => replace(prepared));
    } catch (err) {
      // Nothing changed (or the change failed). A write that failed is the save's own
      // error, whatever the claim met; else the prepared file goes, once it is made.
      const made = await prepared.then(
        (p) => p,
        (writeError: unknown) => ({ writeError }),
      );
      if ('writeError' in made) throw made.writeError;
      await rm(made.tmp, { force: true });
      throw err;
    }
  }

  async delete(key: string, condition?: { readonly ifMatch: string }): Promise<void> {
    const path = this.describe(key);
    const remove = async () => {
      await rm(path, { force: true });
      await fsyncDirIfThere(dirname(path));
    };
    if (condition) await this.#compareAndSwap(key, condition.ifMatch, remove);
    else await remove();
  }

  /** Runs `change` only if `key` is at `version`, with no other change of that version possible meanwhile. */
  async #compareAndSwap<T>(key: string, version: string, change: () => Promise<T>): Promise<T> {
    const path = this.describe(key);
    const claims = new Claims(dirname(path), `.${basename(path)}.cas.${version}`);
    const mine = await this.#claim(key, claims);
    faultPoint('cas-claimed', mine.path);
    try {
      let current: string;
      try {
        current = versionOf(await stat(path, { bigint: true }));
      } catch (err) {
        if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw new PreconditionFailed(key);
        throw err;
      }
      if (current !== version) throw new PreconditionFailed(key);
      // Only a writer that judged this one stale (frozen past CLAIM_STALE_MS) makes a
      // newer claim over a live one: change only while ours is still the newest.
      if (!(await claims.holds(mine))) throw new PreconditionFailed(key);
      return await change();
    } finally {
      await claims.release(mine);
    }
  }

  /**
   * Claims a version: creates the newest claim of it exclusively, over no claim or over
   * a stale one; fails with PreconditionFailed while a live writer holds the newest.
   */
  async #claim(key: string, claims: Claims): Promise<Claim> {
    const text = JSON.stringify({ ...selfStamp(), claim: randomBytes(8).toString('hex') });
    // Each failed create means another writer created that claim meanwhile: the next
    // look finds it live (we lost) or, rarely, a crashed writer's (taken over once more).
    for (let attempt = 0; attempt < 3; attempt++) {
      const all = await claims.all();
      if (all === null) break; // the folder is gone, and the key with it
      const newest = all.at(-1);
      let over: { path: string; identity: string } | undefined;
      if (newest !== undefined) {
        const stale = await staleClaim(newest.path);
        if (stale === 'gone') continue; // dropped meanwhile: look again
        if (stale === undefined) break; // a live writer's: this version is being replaced
        over = { path: newest.path, identity: stale };
        faultPoint('cas-claim-judged-stale', newest.path);
      }
      const generation = newest === undefined ? 0 : newest.generation + 1;
      const mine: Claim = { path: claims.path(generation), text, generation };
      // Written whole, then linked into place: a claim is never seen half-written.
      const tmp = tempPathFor(mine.path);
      try {
        await writeFile(tmp, text, { mode: PRIVATE_FILE, flag: 'wx' });
        await link(tmp, mine.path);
      } catch (err) {
        if (isErrno(err, 'ENOENT', 'ENOTDIR')) break;
        if (!isErrno(err, 'EEXIST')) throw err;
        continue;
      } finally {
        await removeFile(tmp);
      }
      // Taken over on what we saw: if the stale claim is not the one there now (a
      // writer that finished meanwhile dropped it, and another claimed afresh), ours
      // stands on nothing. Withdraw it, and lose.
      let stands: boolean;
      try {
        stands = over === undefined || (await claimAt(over.path))?.identity === over.identity;
      } catch (err) {
        await removeFile(mine.path);
        throw err;
      }
      if (stands) return mine;
      await removeFile(mine.path);
      break;
    }
    throw new PreconditionFailed(key);
  }

  async upload(key: string, chunks: AsyncIterable<Uint8Array>): Promise<UploadResult> {
    const path = await this.#parentOf(key);
    const hash = createHash('sha256');
    let bytes = 0;
    let tmp: string;
    try {
      ({ tmp } = await this.#temp(path, this.#private(key) ? PRIVATE_FILE : PUBLIC_FILE, async (handle) => {
        let batch: Uint8Array[] = [];
        let batched = 0;
        const flush = async () => {
          const data = Buffer.concat(batch, batched);
          batch = [];
          batched = 0;
          // appendFile loops until every byte is written, unlike one write().
          await handle.appendFile(data).catch((err: unknown) => {
            throw new FileSystemError(err);
          });
        };
        for await (const chunk of chunks) {
          hash.update(chunk);
          bytes += chunk.length;
          batch.push(chunk);
          batched += chunk.length;
          if (batched >= WRITE_BATCH_BYTES) await flush();
        }
        if (batched > 0) await flush();
      }));
    } catch (err) {
      // An error of the chunk source (an encoder, a record check) passes unchanged;
      // a file-system failure names the file.
      if (err instanceof FileSystemError) throw outputError(err.cause, path);
      if (err instanceof ExportError || !isErrno(err, ...FS_CODES)) throw err;
      throw outputError(err, path);
    }
    try {
      await rename(tmp, path);
      await fsyncDir(dirname(path));
    } catch (err) {
      await rm(tmp, { force: true });
      throw outputError(err, path);
    }
    return { bytes, sha256: hash.digest('hex') };
  }

  async *readStream(key: string, options?: ReadOptions): AsyncIterable<Buffer> {
    const stream = createReadStream(this.describe(key), { highWaterMark: options?.chunkBytes ?? READ_CHUNK_BYTES });
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
    } finally {
      stream.destroy();
    }
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isErrno(err, 'ENOENT', 'ENOTDIR')) return;
        throw err;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (!isInternal(e.name)) out.push(relative(this.root, full).split(sep).join('/'));
      }
    };
    await walk(this.describe(prefix.replace(/\/$/, '')));
    return out;
  }

  /**
   * Removes every key, then makes the removals durable with one fsync per folder (not
   * per key). Both steps run their calls at once: a staging removal's dozen removals and
   * syncs, one after the other, were ~5 ms of every run's end.
   */
  async deleteKeys(keys: readonly string[]): Promise<void> {
    const folders = new Set(keys.map((key) => dirname(this.describe(key))));
    await settleAll(
      keys.map(async (key) => {
        await rm(this.describe(key), { force: true });
        faultPoint('key-deleted', key);
      }),
    );
    await settleAll([...folders].map(fsyncDirIfThere));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const path = this.describe(prefix.replace(/\/$/, ''));
    await rm(path, { recursive: true, force: true });
    await fsyncDirIfThere(dirname(path));
  }

  async promote(from: string, to: string, files: readonly string[]): Promise<void> {
    const source = this.describe(from.replace(/\/$/, ''));
    const target = await this.#parentOf(to.replace(/\/$/, ''));
    if (files.length === 0) throw new ExportError('INTERNAL', `nothing to publish in ${source}`);
    // The publish folder was born with public modes; one rename makes it visible whole.
    await chmod(source, 0o755).catch(() => undefined);
    try {
      await rename(source, target);
    } catch (err) {
      // Already renamed by an earlier run that crashed after the rename.
      if (isErrno(err, 'ENOENT') && (await this.exists(`${to.replace(/\/$/, '')}/${files[files.length - 1]!}`))) return;
      if (isErrno(err, 'EEXIST', 'ENOTEMPTY')) {
        throw new ExportError('SNAPSHOT_PUBLISHED', `${target} already exists; refusing to publish over it`, { file: target }, { cause: err });
      }
      throw err;
    }
    faultPoint('publish-renamed', to);
    await fsyncDir(dirname(target));
  }
}

/** Makes removals in `dir` durable; a folder already gone (removed with its parent) has nothing to sync. */
async function fsyncDirIfThere(dir: string): Promise<void> {
  await fsyncDir(dir).catch((err: unknown) => {
    if (!isErrno(err, 'ENOENT')) throw err;
  });
}

/** A failure of the file being written, as opposed to one of the bytes' source. */
class FileSystemError extends Error {
  constructor(override readonly cause: unknown) {
    super('file system error');
  }
}

/** errno codes that mean the file system refused or failed. */
export const FS_CODES = ['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOTDIR', 'EEXIST', 'EIO', 'EISDIR', 'EMFILE', 'ENFILE', 'ENOENT', 'ELOOP', 'ENAMETOOLONG', 'EFBIG'];

function outputError(err: unknown, file: string): ExportError {
  const code = (err as NodeJS.ErrnoException)?.code;
  return new ExportError('OUTPUT_IO', `cannot write ${file}: ${code ?? (err instanceof Error ? err.message : String(err))}`, { file }, { cause: err });
}

