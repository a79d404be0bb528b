/**
 * An IAMClient whose calls never leave the process: a middleware answers
 * ListAccessKeys / ListUsers from arrays with real Marker paging, so paginator
 * semantics can be checked exhaustively and fast. Counts requests.
 *
 * Markers are cursors, as a consistent server's are: they name the last item
 * returned (a key's CreateDate and id; a user's name), and the next page starts at
 * the first item after it. The arrays may be changed between calls (keys added or
 * deleted) to test paging under change; keep them in (CreateDate, id) / name order.
 */
import { IAMClient, type AccessKeyMetadata, type User } from '@aws-sdk/client-iam';

export interface StubRequest {
  readonly action: string;
  readonly UserName?: string;
  readonly PathPrefix?: string;
  readonly MaxItems?: number;
  readonly Marker?: string;
}

export interface StubIam {
  readonly client: IAMClient;
  readonly requests: StubRequest[];
}

export interface StubOptions {
  /** An error to answer `request` with (the n-th request of all is `requests.length - 1`), or undefined to answer it. */
  readonly fail?: (request: StubRequest, index: number) => unknown;
  /** Awaited before answering (and before `fail`). */
  readonly before?: (request: StubRequest, index: number) => Promise<void> | void;
}

function page<T>(items: T[], input: { Marker?: string; MaxItems?: number }, keyOf: (item: T) => string) {
  const start = input.Marker === undefined ? 0 : items.findIndex((item) => keyOf(item) > input.Marker!);
  const from = start < 0 ? items.length : start;
  const size = input.MaxItems ?? 100;
  const slice = items.slice(from, from + size);
  const end = from + slice.length;
  const more = end < items.length && slice.length > 0;
  return { slice, IsTruncated: more, Marker: more ? keyOf(slice[slice.length - 1]!) : undefined };
}

const keyCursor = (k: AccessKeyMetadata) => `${String(k.CreateDate?.getTime() ?? 0).padStart(15, '0')}|${k.AccessKeyId}`;
const userCursor = (u: User) => u.UserName ?? '';

/** A stub with `keys` per user name and a list of users (both may be mutated between calls). */
export function stubIam(keys: Record<string, AccessKeyMetadata[]>, users: User[] = [], options: StubOptions = {}): StubIam {
  const client = new IAMClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const requests: StubRequest[] = [];
  client.middlewareStack.add(
    () => async (args) => {
      const input = args.input as { UserName?: string; PathPrefix?: string; Marker?: string; MaxItems?: number };
      const action = 'UserName' in input ? 'ListAccessKeys' : 'ListUsers';
      const request: StubRequest = {
        action,
        ...(input.UserName !== undefined ? { UserName: input.UserName } : {}),
        ...(input.PathPrefix !== undefined ? { PathPrefix: input.PathPrefix } : {}),
        ...(input.MaxItems !== undefined ? { MaxItems: input.MaxItems } : {}),
        ...(input.Marker !== undefined ? { Marker: input.Marker } : {}),
      };
      const index = requests.push(request) - 1;
      await options.before?.(request, index);
      const failure = options.fail?.(request, index);
      if (failure !== undefined) throw failure;
      if (action === 'ListAccessKeys') {
        const p = page(keys[input.UserName as string] ?? [], input, keyCursor);
        return { output: { AccessKeyMetadata: p.slice, IsTruncated: p.IsTruncated, Marker: p.Marker, $metadata: {} } } as never;
      }
      const prefix = input.PathPrefix ?? '/';
      const p = page(users.filter((u) => (u.Path ?? '/').startsWith(prefix)), input, userCursor);
      return { output: { Users: p.slice, IsTruncated: p.IsTruncated, Marker: p.Marker, $metadata: {} } } as never;
    },
    { step: 'initialize', name: 'stubIam' },
  );
  return { client, requests };
}
