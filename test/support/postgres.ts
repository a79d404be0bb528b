/**
 * A throwaway PostgreSQL server for tests: a fresh cluster in a temp dir (initdb),
 * listening on a free loopback port only, trust authentication, stopped and
 * deleted by `stop`. It needs the server binaries (Debian's `postgresql`
 * package, installed by .ci/run): found on PATH or in /usr/lib/postgresql/<v>/bin.
 * initdb and the server refuse to run as root, so as root they run as the
 * `postgres` user (which the package creates) through runuser.
 */
import { execFile, spawn } from 'node:child_process';
import { chown, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A running server and how to reach it. */
export interface PostgresServer {
  readonly port: number;
  /**
   * Runs psql on the server's `postgres` database with ON_ERROR_STOP; `stdin`
   * becomes psql's standard input. Resolves with stdout and stderr, rejects with
   * them (in the message) when psql fails.
   */
  psql(args: readonly string[], stdin?: string | Buffer): Promise<{ stdout: string; stderr: string }>;
  /** Stops the server and deletes its cluster. */
  stop(): Promise<void>;
}

/** Why no server could be started, when that is the machine's fault (no binaries, no user). */
export interface PostgresUnavailable {
  readonly unavailable: string;
}

/** Starts a server, or says why this machine cannot. */
export async function startPostgres(): Promise<PostgresServer | PostgresUnavailable> {
  const bin = await findBinDir();
  if (bin === undefined) return { unavailable: 'PostgreSQL server binaries (initdb, pg_ctl, psql) not found: apt-get install -y postgresql' };
  const asRoot = userInfo().uid === 0;
  let owner: { uid: number; gid: number } | undefined;
  if (asRoot) {
    try {
      const { stdout: uid } = await run('id', ['-u', 'postgres']);
      const { stdout: gid } = await run('id', ['-g', 'postgres']);
      owner = { uid: Number(uid.trim()), gid: Number(gid.trim()) };
    } catch {
      return { unavailable: 'running as root and there is no postgres user to run the server as' };
    }
  }
  const dir = await mkdtemp(join(tmpdir(), 'ike-postgres-'));
  if (owner !== undefined) await chown(dir, owner.uid, owner.gid);
  const data = join(dir, 'data');
  // Server commands run as the cluster's owner; psql is a client and runs as us.
  const asOwner = (file: string, args: readonly string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', file, ...args]) : run(file, [...args]));
  const port = await freePort();
  try {
    await asOwner(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    // Loopback TCP only; the Unix socket goes in the temp dir, not /var/run.
    const serverOptions = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off`;
    await asOwner(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-o', serverOptions, '-w', 'start']);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    psql: (args, stdin) => psql(join(bin, 'psql'), port, args, stdin),
    stop: async () => {
      try {
        await asOwner(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

function psql(file: string, port: number, args: readonly string[], stdin?: string | Buffer): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, ['-X', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`psql ${args.join(' ')} exited ${String(code)}:\n${stderr}`));
    });
    // psql run with -c or -f may exit before it reads its stdin: writing then fails with
    // EPIPE, which says nothing about the command (its exit code does), and without a
    // listener it would be an uncaught exception failing whatever test is running.
    child.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    child.stdin.end(stdin ?? '');
  });
}

/** The directory with initdb, pg_ctl and psql: PATH first, then Debian's versioned dirs, newest first. */
async function findBinDir(): Promise<string | undefined> {
  const candidates = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  try {
    const versions = (await readdir('/usr/lib/postgresql')).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => join('/usr/lib/postgresql', v, 'bin')));
  } catch {
    // No Debian layout: PATH only.
  }
  for (const dir of candidates) {
    const found = await Promise.all(['initdb', 'pg_ctl', 'psql'].map((name) => stat(join(dir, name)).then((s) => s.isFile(), () => false)));
    if (found.every(Boolean)) return dir;
  }
  return undefined;
}

/** A loopback port nobody listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
