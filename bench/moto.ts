/**
 * moto_server as a child of the bench (tracked, so any exit kills it), with one
 * bucket, for the S3 scenario. Same start as test/support/moto.ts: a free port,
 * ready once /moto-api/ answers.
 */
import { once } from 'node:events';
import { freePort } from '../test/support/moto.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { signalGroup, startTracked } from './proc.ts';

export interface MotoProcess {
  readonly url: string;
  stop(): Promise<void>;
}

/** Starts moto_server with `bucket` created; throws when moto_server is missing. */
export async function startMotoS3(bucket: string): Promise<MotoProcess> {
  const port = await freePort();
  const child = startTracked('moto_server', ['-H', '127.0.0.1', '-p', String(port)], process.env);
  child.stdout?.resume();
  child.stderr?.resume();
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    signalGroup(child, 'SIGTERM');
    await Promise.race([exited, sleep(5000).then(() => signalGroup(child, 'SIGKILL'))]);
  };
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error('moto_server exited at start (pip install "moto[server]")');
    try {
      const res = await fetch(`${url}/moto-api/`);
      await res.arrayBuffer();
      if (res.status < 500) break;
    } catch {
      // not listening yet
    }
    if (i > 300) {
      await stop();
      throw new Error('moto_server did not start within 30 s');
    }
    await sleep(100);
  }
  const client = new S3Client({ region: 'us-east-1', endpoint: url, forcePathStyle: true, credentials: { accessKeyId: 'AKIDBENCHBENCHBENCH0', secretAccessKey: 'bench-secret-not-real' } });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return { url, stop };
}
