/**
 * One run per --out at a time. Two overlapping runs (a cron job that outlived its
 * period) would both resume the same staged snapshot and interleave its parts, so
 * the second must refuse. The lock is a lease: `<out>/_staging/.lock`, created
 * atomically with its content (pid, host) and touched every few seconds while the
 * run lives. A lock whose process is gone (same host) or whose lease ran out (any
 * host: a rescheduled pod) is stale and taken over; SIGKILL never leaves --out
 * locked for good.
 */
import { hostname } from 'node:os';
import { link, readFile, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { ExportError } from './errors.ts';
import { PRIVATE_FILE_MODE, tempPathFor, writeFileAtomic } from './fsutil.ts';

export const LOCK_FILE = '.lock';
/** How often a live run renews its lease. */
export const LEASE_RENEW_MS = 5_000;
/** A lease not renewed for this long belongs to a run that is gone. */
export const LEASE_EXPIRY_MS = 30_000;

interface LockContent {
  readonly pid: number;
  readonly host: string;
  readonly since: string;
}

export interface Lock {
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of the staging root `dir` (which must exist), or throws OUTPUT_LOCKED. */
export async function acquireLock(dir: string, now: () => number = Date.now): Promise<Lock> {
  const path = join(dir, LOCK_FILE);
  const mine: LockContent = { pid: process.pid, host: hostname(), since: new Date(now()).toISOString() };
  for (let attempt = 0; ; attempt++) {
    // Written whole to a temp file, then linked into place: the lock never exists half-written.
    const tmp = tempPathFor(path);
    await writeFileAtomic(tmp, JSON.stringify(mine), PRIVATE_FILE_MODE);
    try {
      await link(tmp, path);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
    } finally {
      await rm(tmp, { force: true });
    }
    const holder = await readHolder(path);
    const age = now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? 0);
    const stale = !holder || age > LEASE_EXPIRY_MS || (holder.host === mine.host && !alive(holder.pid));
    if (!stale) {
      throw new ExportError(
        'OUTPUT_LOCKED',
        `another run (pid ${holder.pid} on ${holder.host}, since ${holder.since}) is exporting into this --out (${path}); wait for it to end, or rerun after ${Math.ceil((LEASE_EXPIRY_MS - age) / 1000)} s if it was killed`,
        { file: path },
      );
    }
    await rm(path, { force: true });
  }
  const timer = setInterval(() => {
    const t = new Date(now());
    utimes(path, t, t).catch(() => undefined);
  }, LEASE_RENEW_MS);
  timer.unref();
  return {
    async release() {
      clearInterval(timer);
      const holder = await readHolder(path);
      if (holder?.pid === mine.pid && holder.host === mine.host) await rm(path, { force: true });
    },
  };
}

async function readHolder(path: string): Promise<LockContent | undefined> {
  try {
    const c = JSON.parse(await readFile(path, 'utf8')) as LockContent;
    return typeof c.pid === 'number' && typeof c.host === 'string' ? c : undefined;
  } catch {
    return undefined;
  }
}
