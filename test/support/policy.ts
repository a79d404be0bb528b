/**
 * deploy/iam-policy.json, the permissions the tool documents, read as data so the
 * tests can hold the code to it: every action any fake or moto answers in a test
 * must be one the policy grants (see `withFake`), so the policy cannot drift.
 */
import { readFileSync } from 'node:fs';
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
