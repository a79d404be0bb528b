/**
 * An IAMClient whose calls never leave the process: a middleware answers
 * ListAccessKeys / ListUsers from arrays with real Marker paging, so paginator
 * semantics can be checked exhaustively and fast. Counts requests.
 */
import { IAMClient, type AccessKeyMetadata, type User } from '@aws-sdk/client-iam';

export interface StubIam {
  readonly client: IAMClient;
  readonly requests: { action: string; MaxItems?: number; Marker?: string }[];
}

function page<T>(items: T[], input: { Marker?: string; MaxItems?: number }) {
  const start = input.Marker === undefined ? 0 : Number(input.Marker.slice(1));
  const size = input.MaxItems ?? 100;
  const slice = items.slice(start, start + size);
  const end = start + slice.length;
  return { slice, IsTruncated: end < items.length, Marker: end < items.length ? `m${end}` : undefined };
}

/** A stub with `keys` per user name and a list of users. */
export function stubIam(keys: Record<string, AccessKeyMetadata[]>, users: User[] = []): StubIam {
  const client = new IAMClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const requests: StubIam['requests'] = [];
  client.middlewareStack.add(
    () => async (args) => {
      const input = args.input as { UserName?: string; Marker?: string; MaxItems?: number };
      const action = 'UserName' in input ? 'ListAccessKeys' : 'ListUsers';
      requests.push({ action, ...(input.MaxItems !== undefined ? { MaxItems: input.MaxItems } : {}), ...(input.Marker !== undefined ? { Marker: input.Marker } : {}) });
      if (action === 'ListAccessKeys') {
        const p = page(keys[input.UserName as string] ?? [], input);
        return { output: { AccessKeyMetadata: p.slice, IsTruncated: p.IsTruncated, Marker: p.Marker, $metadata: {} } } as never;
      }
      const p = page(users, input);
      return { output: { Users: p.slice, IsTruncated: p.IsTruncated, Marker: p.Marker, $metadata: {} } } as never;
    },
    { step: 'initialize', name: 'stubIam' },
  );
  return { client, requests };
}
