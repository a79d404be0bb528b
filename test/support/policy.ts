/**
 * deploy/iam-policy.json, the permissions the tool documents, read as data so the
 * tests can hold the code to it: every action any fake or moto answers in a test
 * must be one the policy grants (see `withFake`), so the policy cannot drift.
 */
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const POLICY_FILE = fileURLToPath(new URL('../../deploy/iam-policy.json', import.meta.url));

interface Statement {
  readonly Sid: string;
  readonly Effect: string;
  readonly Action: readonly string[];
  readonly Resource: string | readonly string[];
}

/** The policy document. */
export function policy(): { Version: string; Statement: Statement[] } {
  return JSON.parse(readFileSync(POLICY_FILE, 'utf8')) as { Version: string; Statement: Statement[] };
}

/** Every action the policy allows (`service:Action`). */
export function policyActions(): Set<string> {
  return new Set(policy().Statement.flatMap((s) => s.Action));
}

/** The statements of the plain mode (`--last-used off`, local output, one account). */
export function plainPolicy(): { Version: string; Statement: Statement[] } {
  const doc = policy();
  return { Version: doc.Version, Statement: doc.Statement.filter((s) => s.Sid.startsWith('Plain')) };
}

const SERVICE_OF: Record<string, string> = {
  GetCallerIdentity: 'sts',
  AssumeRole: 'sts',
  ListAccounts: 'organizations',
  DescribeOrganization: 'organizations',
};

/** The IAM action name (`iam:ListUsers`) of an API action as the fakes count it. */
export function qualified(action: string): string {
  return `${SERVICE_OF[action] ?? 'iam'}:${action}`;
}

/** Actions in `calls` (action → count) that the policy does not grant. */
export function ungranted(calls: Readonly<Record<string, number>>): string[] {
  const granted = policyActions();
  return Object.entries(calls)
    .filter(([action, n]) => n > 0 && !granted.has(qualified(action)))
    .map(([action]) => qualified(action));
}

const PIPELINE = fileURLToPath(new URL('../../pipeline/', import.meta.url));

/** IAM actions of the S3 operations (their names differ from the API's). */
const S3_ACTIONS: Record<string, string[]> = {
  GetObject: ['s3:GetObject'],
  HeadObject: ['s3:GetObject'],
  PutObject: ['s3:PutObject'],
  CopyObject: ['s3:GetObject', 's3:PutObject'],
  DeleteObject: ['s3:DeleteObject'],
  DeleteObjects: ['s3:DeleteObject'],
  ListObjectsV2: ['s3:ListBucket'],
  HeadBucket: ['s3:ListBucket'],
  CreateMultipartUpload: ['s3:PutObject'],
  UploadPart: ['s3:PutObject'],
  CompleteMultipartUpload: ['s3:PutObject'],
  AbortMultipartUpload: ['s3:AbortMultipartUpload'],
};

const SERVICE_PREFIX: Record<string, string> = { iam: 'iam', sts: 'sts', s3: 's3', organizations: 'organizations' };

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/**
 * Every AWS action (`service:Action`) the program's sources call: the commands and
 * paginators they import from an @aws-sdk client and use.
 */
export async function calledActions(): Promise<Set<string>> {
  const used = new Set<string>();
  for (const file of await sources(PIPELINE)) {
    const text = await readFile(file, 'utf8');
    // The SDK's fromTemporaryCredentials calls STS AssumeRole with the base credentials.
    if (/\bfromTemporaryCredentials\(/.test(text)) used.add('sts:AssumeRole');
    // Static imports, and the lazy ones of modules only some runs load (`const { X } = await import('@aws-sdk/…')`).
    for (const m of text.matchAll(/(?:import\s*\{([^}]*)\}\s*from\s*|const\s*\{([^}]*)\}\s*=\s*await\s+import\(\s*)'@aws-sdk\/(client-[a-z0-9-]+|lib-storage)'/g)) {
      const service = m[3] === 'lib-storage' ? 's3' : m[3]!.slice('client-'.length);
      for (const raw of (m[1] ?? m[2])!.split(',')) {
        const name = raw.replace(/^\s*type\s+/, '').split(/\s+as\s+/)[0]!.trim();
        const op = name.endsWith('Command') ? name.slice(0, -'Command'.length) : name.startsWith('paginate') ? name.slice('paginate'.length) : name === 'Upload' ? 'CreateMultipartUpload' : undefined;
        if (!op || !text.includes(name + (name.endsWith('Command') ? '(' : ''))) continue;
        for (const action of service === 's3' ? (S3_ACTIONS[op] ?? [`s3:${op}`]) : [`${SERVICE_PREFIX[service] ?? service}:${op}`]) used.add(action);
      }
    }
  }
  return used;
}
