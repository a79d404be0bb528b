/** Resources a test uses and always releases: a temp directory, a running fake IAM. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeIam, type FakeIam, type FakeIamOptions } from '../fake-iam/server.ts';

/** Runs `fn` with a fresh temp directory, removed afterwards whatever happens. */
export async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'ike-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `fn` with a fake IAM, closed afterwards whatever happens. */
export async function withFake<T>(options: FakeIamOptions, fn: (fake: FakeIam) => Promise<T>): Promise<T> {
  const fake = await startFakeIam(options);
  try {
    return await fn(fake);
  } finally {
    await fake.close();
  }
}
