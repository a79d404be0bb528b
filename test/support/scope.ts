/** Resources a test uses and always releases: a temp directory, a running fake IAM. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { startFakeIam, type FakeIam, type FakeIamOptions } from '../fake-iam/server.ts';
import { ungranted } from './policy.ts';

/** Runs `fn` with a fresh temp directory, removed afterwards whatever happens. */
export async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'ike-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `fn` with a fake IAM, closed afterwards whatever happens. Every action the
 * fake answered must be granted by deploy/iam-policy.json: across the suite, the
 * documented permissions cannot fall behind what the code calls.
 */
export async function withFake<T>(options: FakeIamOptions, fn: (fake: FakeIam) => Promise<T>): Promise<T> {
  const fake = await startFakeIam(options);
  let result: T;
  try {
    result = await fn(fake);
  } finally {
    await fake.close();
  }
  assert.deepEqual(ungranted(fake.stats().calls), [], 'actions called but missing from deploy/iam-policy.json');
  return result;
}
