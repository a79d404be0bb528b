/**
 * Opens the store a `--out` value names. A plain path or a file:// URL is a local
 * folder; it is checked before anything is created in it, so a bad value fails at
 * once with one line (a file in the way, a read-only or pseudo file system such as
 * /proc, where a recursive mkdir could spin), and its missing folders are then
 * created one at a time like `mkdir -p`, under the umask.
 */
import { constants } from 'node:fs';
import { access, mkdir, stat, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExportError } from '../errors.ts';
import { fsyncDir } from '../fsutil.ts';
import { LocalStore } from './local.ts';
import type { Store } from './store.ts';

export type { Store } from './store.ts';

/** statfs magic numbers of file systems that are not storage (proc, sysfs, cgroup, devpts, debugfs, tracefs, securityfs, bpf, pstore). */
const PSEUDO_FS = new Set([0x9fa0, 0x62656572, 0x27e0eb, 0x63677270, 0x1cd1, 0x64626720, 0x74726163, 0x73636673, 0xcafe4a11, 0x6165676c]);

function outError(out: string, what: string, cause?: unknown): ExportError {
  return new ExportError('OUTPUT_IO', `--out ${out}: ${what}`, { flag: '--out', file: out }, cause === undefined ? undefined : { cause });
}

/** The local folder of a --out value (a path, or a file:// URL). */
export function localPathOf(out: string): string {
  return out.startsWith('file://') ? fileURLToPath(out) : resolve(out);
}

/** Checks a local --out and creates it (with missing parents); returns its store. */
export async function openLocalStore(out: string): Promise<LocalStore> {
  const root = localPathOf(out);
  // The nearest existing ancestor decides: it must be a writable folder on a real file system.
  const missing: string[] = [];
  let existing = root;
  for (;;) {
    try {
      const s = await stat(existing);
      if (!s.isDirectory()) throw outError(out, `${existing} is a file, not a folder`);
      break;
    } catch (err) {
      if (err instanceof ExportError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      // ENOTDIR: a file is in the way higher up; walking up finds and names it.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw outError(out, `cannot use ${existing} (${code ?? 'error'})`, err);
      missing.unshift(existing);
      const parent = dirname(existing);
      if (parent === existing) throw outError(out, 'no part of the path exists');
      existing = parent;
    }
  }
  const fs = await statfs(existing).catch(() => undefined);
  if (fs && PSEUDO_FS.has(Number(fs.type))) throw outError(out, `${existing} is on a pseudo file system (like /proc), not storage`);
  try {
    await access(existing, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw outError(out, `cannot create or write in ${existing} (${(err as NodeJS.ErrnoException).code ?? 'not writable'})`, err);
  }
  for (const dir of missing) {
    try {
      await mkdir(dir); // 0777 before the umask: 0755 under umask 022, as mkdir -p
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw outError(out, `cannot create ${dir} (${code ?? 'error'})`, err);
    }
    await fsyncDir(dirname(dir)).catch(() => undefined);
  }
  // Messages name the folder as the operator wrote it.
  return new LocalStore(out.startsWith('file://') ? root : out);
}

/** The store of a --out value. */
export function openStore(out: string): Promise<Store> {
  return openLocalStore(out);
}
