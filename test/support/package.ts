/**
 * The shipped artifact, made the way an operator gets it: `npm pack` of this
 * checkout (its prepack script rebuilds dist/), then `npm install -g --prefix <dir>`
 * of the tarball. Used by test/package.test.ts and by `make bench`, so both measure
 * the installed command rather than the sources through tsx.
 */
import { spawn } from 'node:child_process';
import { realpath } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PACKAGE_NAME = 'iam-key-export';

export interface InstalledPackage {
  /** The tarball `npm pack` wrote. */
  readonly tarball: string;
  /** The `--prefix` it was installed into. */
  readonly prefix: string;
  /** `<prefix>/bin/iam-key-export`: the command an operator has on PATH. */
  readonly command: string;
  /** `<prefix>/lib/node_modules/iam-key-export`: the installed package. */
  readonly packageDir: string;
  /** Wall time of `npm pack` (build included) and of `npm install -g`. */
  readonly packMs: number;
  readonly installMs: number;
}

/**
 * Packs this checkout into `dir` and installs the tarball into `dir/prefix`.
 * Dependencies come from npm's cache when it has them (`--prefer-offline`), else
 * from the registry, resolved from package.json as for any operator (a tarball
 * carries no lock file).
 */
export async function packAndInstall(dir: string): Promise<InstalledPackage> {
  let started = performance.now();
  const packed = await npm(['pack', '--json', '--pack-destination', dir], REPO_ROOT);
  const packMs = performance.now() - started;
  const [{ filename }] = JSON.parse(packed.slice(packed.indexOf('['))) as [{ filename: string }];
  const tarball = join(dir, filename);
  const prefix = join(dir, 'prefix');
  started = performance.now();
  await npm(['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--no-update-notifier', tarball], dir);
  const installMs = performance.now() - started;
  const command = join(prefix, 'bin', PACKAGE_NAME);
  return { tarball, prefix, command, packageDir: dirname(dirname(await realpath(command))), packMs, installMs };
}

/**
 * An environment whose `node` is the one running this process, so that the
 * command's `#!/usr/bin/env node` line starts the Node under test (CI runs the
 * suites on two versions).
 */
export function withThisNode(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, PATH: [dirname(process.execPath), env.PATH ?? ''].join(delimiter) };
}

/** Runs npm with this Node first on PATH and no npm_* settings inherited from an enclosing npm script. */
function npm(args: readonly string[], cwd: string): Promise<string> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith('npm_')) env[k] = v;
  const child = spawn('npm', args, { cwd, env: withThisNode(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`npm ${args.join(' ')} exited ${code ?? signal}:\n${stderr.trim()}`));
    });
  });
}
