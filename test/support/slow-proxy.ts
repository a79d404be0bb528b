/**
 * A loopback HTTP proxy that adds latency in front of another server (moto_server),
 * so a kill test against an IAM implementation we did not write has runs long
 * enough to be interrupted many times. It forwards requests and answers unchanged;
 * a test may hold requests of one action until something else happened.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface SlowProxy {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Starts a proxy to `target` (http://host:port) that waits `latencyMs` before forwarding each request,
 * and before that for `hold(action)` when it gives a promise (the request's Action, from its form body).
 */
export async function startSlowProxy(target: string, latencyMs: number, hold?: (action: string) => Promise<void> | undefined): Promise<SlowProxy> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      await hold?.(new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('Action') ?? '');
      setTimeout(() => {
        const fwd = request(
          { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        fwd.on('error', () => res.destroy());
        fwd.end(Buffer.concat(chunks));
      }, latencyMs);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
