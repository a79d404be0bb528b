/**
 * Child processes of the benchmark: every exporter run, worker and fake IAM is a
 * separate process, started in its own process group and tracked here, so that
 * an error, Ctrl-C or `process.exit` anywhere in the bench kills them all and
 * leaves no orphan behind.
 *
 * A measured child runs under GNU time (`/usr/bin/time -f '%M %U %S'`), which
 * reports its peak RSS and CPU; the parent measures its process wall time, Node
 * startup included.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const GNU_TIME = '/usr/bin/time';
const live = new Set<ChildProcess>();
const cleanups = new Set<() => void>();
let hooked = false;

/** Kills the process group of every child still running (synchronous: safe in an 'exit' handler). */
export function killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of live) signalGroup(child, signal);
  live.clear();
}

/**
 * Registers a synchronous clean-up (e.g. removing a scratch directory) to run if
 * the bench is interrupted; returns the function that unregisters it.
 */
export function onInterrupt(cleanup: () => void): () => void {
  hookCleanup();
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** Signals a child's whole process group (it was spawned detached, as a group leader). */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Installs the exit and signal handlers that clean up (once). */
function hookCleanup(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => killAll());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      for (const cleanup of cleanups) cleanup();
      process.stderr.write(`bench: ${sig}: child processes killed\n`);
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

/** Starts a tracked child in its own process group; it leaves the set when it exits. */
export function startTracked(command: string, args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  hookCleanup();
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** What a finished measured child reports. */
export interface ChildResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Spawn to exit, as seen by the parent: Node startup included. */
  readonly processMs: number;
  /** Peak RSS in KiB (GNU time), null when /usr/bin/time is missing. */
  readonly maxRssKb: number | null;
  /** User + system CPU in ms (GNU time), null when /usr/bin/time is missing. */
  readonly cpuMs: number | null;
}

/** True when peak RSS can be measured. */
export const canMeasureRss = existsSync(GNU_TIME);

let sequence = 0;

/** Runs `node <args>` (this Node) to completion under GNU time: see runCommand. */
export function runNode(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ChildResult> {
  return runCommand(process.execPath, args, env, timeoutMs);
}

/**
 * Runs `file <args>` to completion under GNU time. Rejects on a timeout (after
 * killing the child's group); a non-zero exit is returned, not thrown.
 */
export async function runCommand(file: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ChildResult> {
  const timeFile = join(tmpdir(), `ike-bench-time-${process.pid}-${++sequence}.txt`);
  const [command, argv] = canMeasureRss ? [GNU_TIME, ['-f', '%M %U %S', '-o', timeFile, file, ...args]] : [file, [...args]];
  const forgetTimeFile = onInterrupt(() => rmSync(timeFile, { force: true }));
  const started = performance.now();
  const child = startTracked(command, argv, env);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    signalGroup(child, 'SIGKILL');
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, s) => resolve([c, s]));
  }).finally(() => clearTimeout(timer));
  const processMs = performance.now() - started;
  forgetTimeFile();
  if (timedOut) {
    await rm(timeFile, { force: true });
    throw new Error(`${basename(file)} ${args.join(' ')}: killed after ${timeoutMs} ms\n${stderr}`);
  }
  let maxRssKb: number | null = null;
  let cpuMs: number | null = null;
  if (canMeasureRss) {
    const text = await readFile(timeFile, 'utf8').catch(() => '');
    await rm(timeFile, { force: true });
    // GNU time prefixes "Command exited with non-zero status N" when it does.
    const last = text.trim().split('\n').pop() ?? '';
    const [rss, user, sys] = last.split(' ').map(Number);
    if (Number.isFinite(rss) && Number.isFinite(user) && Number.isFinite(sys)) {
      maxRssKb = rss!;
      cpuMs = Math.round((user! + sys!) * 1000);
    }
  }
  return { code, signal, stdout, stderr, processMs, maxRssKb, cpuMs };
}

/** Fails with the child's stderr unless it exited 0. */
export function expectSuccess(what: string, r: ChildResult): ChildResult {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code ?? r.signal}:\n${r.stderr.trim()}`);
  return r;
}
