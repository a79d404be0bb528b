/**
 * A child process for the mid-upload crash test: uploads `bytes` bytes of zeros
 * to `key` through an S3Store (multipart above 5 MiB), so the fault-point preload
 * can kill it after a part is stored.
 *
 *   node --import tsx --import fault-hook.mjs s3-upload.ts <endpoint> <bucket> <prefix> <key> <bytes>
 */
import { S3Store } from '../../pipeline/store/s3.ts';
import { testS3Client } from './s3.ts';

const [endpoint, bucket, prefix, key, size] = process.argv.slice(2);
const client = testS3Client(endpoint!);
const store = new S3Store({ client, bucket: bucket!, prefix: prefix!, ownsClient: true });
const total = Number(size);
async function* zeros(): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < total; sent += 1 << 20) yield new Uint8Array(Math.min(1 << 20, total - sent));
}
const r = await store.upload(key!, zeros());
store.close();
process.stdout.write(`${JSON.stringify(r)}\n`);
