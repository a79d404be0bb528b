/**
 * Durable file primitives. Every file written for a user goes through these:
 * write a temp file next to the target, fsync it, rename it over the target,
 * fsync the directory, so a crash leaves either the old file or the new one.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Mode of files that hold state or staged data: the owner only. */
export const PRIVATE_FILE_MODE = 0o600;
/** Mode of staging directories. */
export const PRIVATE_DIR_MODE = 0o700;

/** A temp path in the same directory as `target`, so the final rename is atomic. */
export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** True for a name `tempPathFor` makes: a write in flight, or abandoned by a crash. */
export function isTempName(name: string): boolean {
  return /^\..+\.\d+\.[0-9a-f]{8}\.tmp$/.test(name);
}

/** Flushes a directory entry (a rename or a create inside it) to disk. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Makes `tmp` (already fsynced) become `target` durably: rename, then fsync the
 * directory. Cleans the temp file if the rename fails.
 */
export async function commitTemp(tmp: string, target: string): Promise<void> {
  try {
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(target));
}

/**
 * Creates `target` atomically and durably: `fill` writes a temp file next to it,
 * which is fsynced, renamed over `target`, and the directory fsynced. On any error
 * the temp file is removed and `target` is left as it was.
 */
export async function writeDurably(target: string, mode: number, fill: (handle: FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPathFor(target);
  const handle = await open(tmp, 'w', mode);
  try {
    await fill(handle);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  await commitTemp(tmp, target);
}

/** Writes `data` to `target` atomically and durably (temp, fsync, rename, fsync dir). */
export function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  return writeDurably(target, mode, (handle) => handle.writeFile(data));
}
