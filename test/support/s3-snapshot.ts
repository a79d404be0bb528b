/**
 * What the S3 tests check about a dataset root in a bucket, read the way an
 * operator would: download it, then read it with DuckDB (expect.ts), and look at
 * the order its objects were written in (the front's record).
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Format } from '../../pipeline/sinks/index.ts';
import type { Manifest } from '../../pipeline/snapshot.ts';
import { onlySnapshotDir, publishedRows, verifyManifest, type KeyRow } from './expect.ts';
import { download, getObject, listKeys, type RecordedRequest } from './s3.ts';

/** Ops that make an object appear. */
const WRITES = new Set(['PutObject', 'CopyObject', 'CompleteMultipartUpload']);

export interface S3Snapshot {
  readonly rows: KeyRow[];
  readonly manifest: Manifest;
  /** Every key under the root, relative to it. */
  readonly keys: string[];
}

/**
 * Downloads the dataset root `prefix` of `bucket`, reads the one published
 * snapshot back with DuckDB, verifies its manifest (sha256 and size of every
 * file) and checks the root is clean: staging empty, _LATEST naming it.
 */
export async function readS3Snapshot(client: S3Client, bucket: string, prefix: string, format: Format): Promise<S3Snapshot> {
  const keys = (await listKeys(client, bucket, `${prefix}/`)).map((k) => k.slice(prefix.length + 1));
  const dir = await download(client, bucket, prefix);
  try {
    const { rows } = await publishedRows(dir, format);
    const manifest = await verifyManifest(await onlySnapshotDir(dir));
    assert.deepEqual(keys.filter((k) => k.startsWith('_staging/')), [], 'staging is deleted after publish');
    assert.equal((await readFile(join(dir, 'access_keys', '_LATEST'), 'utf8')).trim(), manifest.snapshot_id, '_LATEST names it');
    const folder = (await readdir(join(dir, 'access_keys'))).filter((d) => d.startsWith('snapshot_id='));
    assert.deepEqual(folder, [`snapshot_id=${manifest.snapshot_id}`]);
    return { rows, manifest, keys };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The keys (relative to the snapshot folder) written into published snapshot folders under `prefix`, in request order. */
export function publishedWrites(requests: readonly RecordedRequest[], bucket: string, prefix: string): string[] {
  const folder = `${prefix}/access_keys/snapshot_id=`;
  return requests.filter((r) => r.bucket === bucket && WRITES.has(r.op) && r.status === 200 && r.key.startsWith(folder)).map((r) => r.key.slice(r.key.indexOf('/', folder.length) + 1));
}

/**
 * What a reader that gates on _SUCCESS sees right now in every snapshot folder
 * under `prefix`: either no _SUCCESS, or _SUCCESS with the manifest and every
 * file it names, whole. Returns the folders holding _SUCCESS.
 */
export async function assertGatedFolders(client: S3Client, bucket: string, prefix: string, why: string): Promise<string[]> {
  const keys = await listKeys(client, bucket, `${prefix}/access_keys/`);
  const gated: string[] = [];
  for (const success of keys.filter((k) => k.endsWith('/_SUCCESS'))) {
    const folder = success.slice(0, -'_SUCCESS'.length);
    const manifest = JSON.parse((await getObject(client, bucket, `${folder}_manifest.json`))?.toString('utf8') ?? 'null') as Manifest | null;
    assert.ok(manifest, `${why}: ${folder} has _SUCCESS but no manifest`);
    for (const f of manifest.files) assert.equal((await getObject(client, bucket, folder + f.file))?.length, f.bytes, `${why}: ${folder}${f.file}`);
    gated.push(folder);
  }
  return gated;
}
