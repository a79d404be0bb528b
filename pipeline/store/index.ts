/**
 * Opens the store a `--out` value names. `s3://bucket/prefix` is an S3 store
 * (s3.ts, loaded only then: a local run does not pay for the S3 SDK). A plain path
 * or a file:// URL is a local folder; it is checked before anything is created in
 * it, so a bad value fails at once with one line (a file in the way, a read-only
 * or pseudo file system such as /proc, where a recursive mkdir could spin), and
 * its missing folders are then created one at a time like `mkdir -p`, under the umask.
 */
import { constants } from 'node:fs';
import { access, mkdir, stat, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@smithy/types';
import type { S3Settings } from '../config.ts';
import { ExportError } from '../errors.ts';
import { fsyncDir } from '../fsutil.ts';
import type { ApiStats } from '../source/client.ts';
import { checkProfile } from '../source/identity.ts';
import { LocalStore } from './local.ts';
import type { Store } from './store.ts';
import { isS3Url, parseS3Url } from './url.ts';

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

/** What an S3 store needs besides its URL (a local store needs nothing). */
export interface OpenStoreOptions {
  readonly s3?: S3Settings;
  /** --region and --profile apply to S3 as to IAM. */
  readonly region?: string | undefined;
  readonly profile?: string | undefined;
  readonly maxAttempts?: number;
  readonly logger?: Logger | undefined;
  readonly env?: NodeJS.ProcessEnv;
  /** Counts the S3 calls (bench). */
  readonly stats?: ApiStats;
}

/** The store of a --out value. */
export function openStore(out: string, options: OpenStoreOptions = {}): Promise<Store> {
  return isS3Url(out) ? openS3Store(out, options) : openLocalStore(out);
}

/**
 * The S3 store of an s3:// --out. Nothing is asked of S3 here: the run's first
 * listing meets a missing bucket or a missing permission and names it.
 */
export async function openS3Store(out: string, options: OpenStoreOptions = {}): Promise<Store> {
  const location = parseS3Url(out);
  // Config parsing reports this already; a caller that skipped it gets the same line.
  if ('problem' in location) throw new ExportError('CONFIG_INVALID', `--out ${out} ${location.problem}`, { flag: '--out' });
  const env = options.env ?? process.env;
  await checkProfile(options.profile ?? (env.AWS_PROFILE || undefined), options.profile !== undefined, env);
  const { createS3Client, s3EndpointOf, S3Store } = await import('./s3.ts');
  const s3 = options.s3 ?? { endpointUrl: undefined, forcePathStyle: false, sse: undefined, kmsKeyId: undefined };
  const client = await createS3Client(
    { region: options.region, profile: options.profile, endpointUrl: s3.endpointUrl, forcePathStyle: s3.forcePathStyle, maxAttempts: options.maxAttempts ?? 3, logger: options.logger },
    env,
  );
  return new S3Store({
    ...location,
    client,
    ownsClient: true,
    root: out,
    sse: s3.sse ? { mode: s3.sse, kmsKeyId: s3.kmsKeyId } : undefined,
    endpoint: s3EndpointOf(s3, env) ?? 'https://s3.amazonaws.com',
    ...(options.stats ? { stats: options.stats } : {}),
  });
}
