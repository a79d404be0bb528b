/**
 * Helpers shared by the fake's own test files (test/fake-iam*.test.ts): a fake
 * with SDK clients on it, closed when the test ends, and error capture.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { IAMClient, type IAMClientConfig } from '@aws-sdk/client-iam';
import { STSClient } from '@aws-sdk/client-sts';
import { startFakeIam, type FakeIam, type FakeIamOptions } from './server.ts';

/** Dummy base credentials: the fake does not check signatures. */
export const credentials = { accessKeyId: 'AKIDEXAMPLEBASE', secretAccessKey: 'test' };

/** What the tests read from any error the SDK throws. */
export interface SdkError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly $fault?: 'client' | 'server';
  readonly $metadata?: { readonly httpStatusCode?: number; readonly attempts?: number; readonly requestId?: string };
}

/** A fake with IAM and STS clients on it; all closed when the test ends. */
export async function fakeWithClients(
  t: TestContext,
  options: FakeIamOptions = {},
  config: Partial<IAMClientConfig> = { maxAttempts: 1 },
): Promise<{ fake: FakeIam; iam: IAMClient; sts: STSClient }> {
  const fake = await startFakeIam(options);
  const common = { endpoint: fake.url, region: 'us-east-1', credentials, maxAttempts: config.maxAttempts ?? 1 };
  const iam = new IAMClient({ ...common, ...config });
  const sts = new STSClient(common);
  t.after(async () => {
    iam.destroy();
    sts.destroy();
    await fake.close();
  });
  return { fake, iam, sts };
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function caught(promise: Promise<unknown>): Promise<SdkError> {
  try {
    await promise;
  } catch (error) {
    return error as SdkError;
  }
  assert.fail('expected the call to fail');
}
