/**
 * The fake IAM as a separate process (test/fake-iam/cli.ts), so its CPU is not
 * on the exporter's thread: started with `node --import tsx` (npx would not pass
 * signals on), ready when it prints its URL, stopped by SIGTERM to its group
 * (SIGKILL if it lingers). Its control plane gives the call counts and the truth.
 */
import { once } from 'node:events';
import type { FakeIamStats } from '../test/fake-iam/server.ts';
import { fileURLToPath } from 'node:url';
import { signalGroup, startTracked } from './proc.ts';

const CLI = fileURLToPath(new URL('../test/fake-iam/cli.ts', import.meta.url));
const READY = /^fake-iam listening on (http:\/\/\S+)$/m;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;

/** GET /_fake/stats, as the fake defines it. */
export type FakeStats = FakeIamStats;

/** The part of GET /_fake/truth the bench reads. */
export interface FakeTruth {
  readonly users: readonly { readonly userName: string; readonly vanished: boolean; readonly denied: boolean }[];
  readonly keys: readonly { readonly userName: string; readonly accessKeyId: string }[];
}

/** A running fake process. */
export interface FakeProcess {
  readonly url: string;
  stats(): Promise<FakeStats>;
  resetStats(): Promise<void>;
  /** POST /_fake/configure: changes fault options (e.g. `accountRateLimits`) while it runs. */
  configure(options: Readonly<Record<string, unknown>>): Promise<void>;
  /** Access key ids a complete export holds: those of users neither vanished nor denied (of `accountId`, default the served account). */
  readableKeyIds(accountId?: string): Promise<string[]>;
  /** Every user name of the served account, as the fake's truth lists them. */
  userNames(): Promise<string[]>;
  /** The organization's accounts (GET /_fake/accounts). */
  accountIds(): Promise<string[]>;
  /** Stops the process; idempotent. */
  stop(): Promise<void>;
}

/** Flags of test/fake-iam/cli.ts, e.g. `{ users: 2000, 'latency-ms': 40 }`. */
export type FakeFlags = Readonly<Record<string, string | number>>;

/** Starts a fake with `flags` on a free port and waits until it listens. */
export async function startFake(flags: FakeFlags): Promise<FakeProcess> {
  const args = ['--import', 'tsx', CLI, '--port', '0', ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const child = startTracked(process.execPath, args, process.env);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    signalGroup(child, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), STOP_TIMEOUT_MS);
    await exited.finally(() => clearTimeout(timer));
  };
  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      let stdout = '';
      const timer = setTimeout(() => reject(new Error(`fake-iam did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        const m = READY.exec(stdout);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`fake-iam exited ${code} before listening: ${stderr.trim()}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  const control = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}/_fake/${path}`, body === undefined ? { method } : { method, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    if (!res.ok) throw new Error(`fake-iam ${method} /_fake/${path}: HTTP ${res.status}`);
    return (await res.json()) as T;
  };
  return {
    url,
    stats: () => control<FakeStats>('GET', 'stats'),
    resetStats: async () => {
      await control('POST', 'stats/reset');
    },
    configure: async (options) => {
      await control('POST', 'configure', options);
    },
    readableKeyIds: async (accountId?: string) => {
      const truth = await control<FakeTruth>('GET', accountId === undefined ? 'truth' : `truth?account=${accountId}`);
      const readable = new Set(truth.users.filter((u) => !u.vanished && !u.denied).map((u) => u.userName));
      return truth.keys.filter((k) => readable.has(k.userName)).map((k) => k.accessKeyId);
    },
    userNames: async () => (await control<FakeTruth>('GET', 'truth')).users.map((u) => u.userName),
    accountIds: async () => (await control<{ readonly id: string }[]>('GET', 'accounts')).map((a) => a.id),
    stop,
  };
}

/** Runs `body` with a fake started from `flags`, and always stops the fake. */
export async function withFake<T>(flags: FakeFlags, body: (fake: FakeProcess) => Promise<T>): Promise<T> {
  const fake = await startFake(flags);
  try {
    return await body(fake);
  } finally {
    await fake.stop();
  }
}
