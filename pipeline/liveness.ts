/**
 * Is the process that wrote a lease or a claim still there? Only answerable on
 * the same machine and boot: its pid must be running and have started at the
 * same moment (a container restarted as PID 1 finds "its" pid running, as a new
 * process). Elsewhere, only time tells (an expiry).
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** Who wrote something, as far as liveness goes. */
export interface ProcessStamp {
  readonly host: string;
  readonly pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22); null where unknown. */
  readonly pid_start: string | null;
  /** The kernel boot id; null where unknown. */
  readonly boot_id: string | null;
}

function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. */
export function processStart(pid: number | 'self'): string | null {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

const BOOT_ID = readProc('/proc/sys/kernel/random/boot_id')?.trim() ?? null;

/** This process. */
export function selfStamp(): ProcessStamp {
  return { host: hostname(), pid: process.pid, pid_start: processStart('self'), boot_id: BOOT_ID };
}

/** Whether `pid` runs here: its start time, null when running but unknown, 'gone' when not running. */
export function probe(pid: number): string | null | 'gone' {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return 'gone';
  }
  return processStart(pid);
}

/**
 * Why the writer `stamp` is known to be gone, seen from `me`, or undefined when
 * it may be alive. `probeOf` says whether a pid runs here (injected by tests).
 */
export function goneBecause(stamp: ProcessStamp, me: ProcessStamp, probeOf: (pid: number) => string | null | 'gone' = probe): string | undefined {
  if (stamp.host !== me.host || stamp.boot_id === null || stamp.boot_id !== me.boot_id) return undefined;
  if (stamp.pid === me.pid) return stamp.pid_start !== null && stamp.pid_start === me.pid_start ? undefined : 'its pid is this process now';
  const start = probeOf(stamp.pid);
  if (start === 'gone') return 'its process is gone';
  if (start !== null && stamp.pid_start !== null && start !== stamp.pid_start) return 'its pid belongs to another process now';
  return undefined;
}
