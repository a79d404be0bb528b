/**
 * Runs the real CLI (bin/iam-key-export.js) as a child process, as a user or a
 * scheduler would, in its own process group so a test can signal the whole tree.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/iam-key-export.js', import.meta.url));
/** The fault-point preload (inert unless IKE_FAULT_POINT / IKE_FAULT_LOG is set). */
export const FAULT_HOOK = fileURLToPath(new URL('./fault-hook.mjs', import.meta.url));

/** Environment for runs against a local fake: dummy credentials, nothing from the developer's AWS setup. */
export function testEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && !k.startsWith('IKE_')) env[k] = v;
  return {
    ...env,
    AWS_ACCESS_KEY_ID: 'AKIDTESTTESTTESTTEST',
    AWS_SECRET_ACCESS_KEY: 'test-secret-not-real',
    AWS_REGION: 'us-east-1',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_EC2_METADATA_DISABLED: 'true',
    ...extra,
  };
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Spawn to exit, in milliseconds. */
  readonly ms: number;
}

export interface RunningCli {
  readonly child: ChildProcess;
  readonly done: Promise<CliResult>;
  /** What the CLI wrote to stdout so far. */
  stdout(): string;
  /** What the CLI wrote to stderr so far. */
  stderr(): string;
  /** Signals the CLI's whole process group. */
  kill(signal: NodeJS.Signals): void;
}

/** Starts the CLI (in `cwd`, default this process's); `done` resolves when it exits. */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = testEnv(), cwd?: string): RunningCli {
  const child = spawn(process.execPath, ['--import', FAULT_HOOK, BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(cwd ? { cwd } : {}) });
  const started = Date.now();
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - started }));
  });
  return {
    child,
    done,
    stdout: () => stdout,
    stderr: () => stderr,
    kill(signal) {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // already gone
      }
    },
  };
}

/** Runs the CLI to completion. */
export function runCli(args: readonly string[], env?: NodeJS.ProcessEnv, cwd?: string): Promise<CliResult> {
  return startCli(args, env, cwd).done;
}
