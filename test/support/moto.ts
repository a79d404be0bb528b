/**
 * moto_server (Python moto), an IAM implementation this project did not write,
 * started on a free loopback port for the test that uses it. Under CI=true a
 * missing moto_server is a failure; elsewhere the test may skip, saying why.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Moto {
  readonly url: string;
  close(): Promise<void>;
}

/** Why moto cannot be used here, or undefined when it can. */
export function motoUnavailable(): string | undefined {
  const r = spawnSync('moto_server', ['--help'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) return 'moto_server is not installed (pip install "moto[server]")';
  return undefined;
}

/** A TCP port free on the loopback interface at this moment. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * moto_server, stopped when our end of its stdin closes: by close(), and also when the
 * test process dies without closing it (killed by a timeout, by Stryker, by hand),
 * which would otherwise leave the server running. Seen: a mutation run left 127
 * servers behind, 12 GB between them. A background reader on a copy of stdin (fd 3;
 * a background job's own stdin is /dev/null) kills the server at end of file; the
 * shell waits for the server, so its exit is the server's.
 */
const GUARDED = 'exec 3<&0; moto_server -H 127.0.0.1 -p "$1" & m=$!; (read _ <&3; kill $m 2>/dev/null; sleep 3; kill -9 $m 2>/dev/null) & wait $m';

/** Starts moto_server and waits until it answers. */
export async function startMoto(options: { env?: Record<string, string> } = {}): Promise<Moto> {
  const port = await freePort();
  const child: ChildProcess = spawn('sh', ['-c', GUARDED, 'sh', String(port)], { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, ...options.env } });
  // Ending stdin when the shell has just exited on its own must not crash the test (EPIPE).
  child.stdin!.on('error', () => undefined);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Python start-up on a loaded machine can take tens of seconds: a generous bound, polled.
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited: ${stderr}`);
    try {
      const res = await fetch(`${url}/moto-api/`);
      await res.arrayBuffer();
      if (res.status < 500) break;
    } catch {
      // not listening yet
    }
    await sleep(100);
    if (Date.now() > deadline) {
      child.stdin!.end();
      throw new Error(`moto_server did not start: ${stderr}`);
    }
  }
  return {
    url,
    async close() {
      if (child.exitCode === null) {
        child.stdin!.end();
        await Promise.race([exited, sleep(5000)]);
      }
    },
  };
}
