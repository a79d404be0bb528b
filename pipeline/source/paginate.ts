/**
 * The seed's paginators (boto3's ListAccessKeys / ListUsers paginators), built on
 * the SDK's own paginators. A page is `{ <items>, IsTruncated, NextToken }` where
 * NextToken resumes exactly after the items yielded so far, even when MaxItems cut
 * inside a server page.
 *
 * A cut resumes by identity, never by position: the token holds the server's
 * Marker of the page and the ids (AccessKeyId, UserId) already yielded from it, and
 * a resumed iteration skips exactly those ids. "Skip the first N" would skip a key
 * that never changed when another one before it was deleted meanwhile, and yield a
 * key twice when one was added. Starting from any NextToken yields exactly the
 * items not yet yielded, in order; items added meanwhile appear, deleted ones don't.
 * These tokens are what the checkpoint stores.
 */
import {
  paginateListAccessKeys,
  paginateListUsers,
  type AccessKeyMetadata,
  type IAMClient,
  type ListAccessKeysCommandOutput,
  type ListUsersCommandOutput,
  type User,
} from '@aws-sdk/client-iam';
import { ExportError } from '../errors.ts';

export interface PaginationConfig {
  /** Items of the whole iteration; absent = all. */
  readonly MaxItems?: number;
  /** MaxItems sent on each request, 1..1000. */
  readonly PageSize?: number;
  /** A NextToken of an earlier iteration. */
  readonly StartingToken?: string;
}

export interface AccessKeysPage {
  readonly AccessKeyMetadata: AccessKeyMetadata[];
  readonly IsTruncated: boolean;
  readonly NextToken?: string;
}

export interface UsersPage {
  readonly Users: User[];
  readonly IsTruncated: boolean;
  readonly NextToken?: string;
}

/** Per-call options handed to `client.send` (cancellation of in-flight calls). */
export interface SendOptions {
  readonly abortSignal?: AbortSignal;
}

interface Position {
  /** Server Marker of the page to fetch; undefined = the first page. */
  readonly marker: string | undefined;
  /** Ids already yielded that may still appear at or after that page (at most a page of them). */
  readonly skip: readonly string[];
}

const TOKEN_PREFIX = 'ike2.';

/** Encodes a position as an opaque NextToken. */
export function encodeToken(position: Position): string {
  const body = JSON.stringify({ m: position.marker ?? null, e: position.skip });
  return TOKEN_PREFIX + Buffer.from(body, 'utf8').toString('base64url');
}

/** Decodes a NextToken produced by `encodeToken`; anything else is PAGINATION_TOKEN_INVALID. */
export function decodeToken(token: string): Position {
  const invalid = () =>
    new ExportError('PAGINATION_TOKEN_INVALID', `invalid StartingToken ${JSON.stringify(token.slice(0, 40))}: not a NextToken of this paginator`);
  if (!token.startsWith(TOKEN_PREFIX)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  const p = parsed as { m?: unknown; e?: unknown };
  if (typeof p !== 'object' || p === null || !(p.m === null || typeof p.m === 'string') || !Array.isArray(p.e) || !p.e.every((id) => typeof id === 'string')) {
    throw invalid();
  }
  return { marker: p.m ?? undefined, skip: p.e as string[] };
}

function validateConfig(config: PaginationConfig): void {
  const { MaxItems, PageSize } = config;
  if (MaxItems !== undefined && (!Number.isSafeInteger(MaxItems) || MaxItems < 1)) {
    throw new RangeError(`PaginationConfig.MaxItems must be a positive integer, got ${MaxItems}`);
  }
  if (PageSize !== undefined && (!Number.isSafeInteger(PageSize) || PageSize < 1 || PageSize > 1000)) {
    throw new RangeError(`PaginationConfig.PageSize must be an integer in 1..1000, got ${PageSize}`);
  }
}

type ServerPages<T> = AsyncIterable<{ items: T[]; marker: string | undefined }>;

/**
 * The boto3 truncation logic over any Marker-paginated server iteration: skips the
 * items already yielded (by id) from the starting position, stops at MaxItems, and
 * builds the NextToken of every yielded page.
 */
async function* truncate<T>(
  config: PaginationConfig,
  idOf: (item: T) => string,
  fetchFrom: (marker: string | undefined) => ServerPages<T>,
): AsyncGenerator<{ items: T[]; IsTruncated: boolean; NextToken?: string }> {
  validateConfig(config);
  const start = config.StartingToken === undefined ? { marker: undefined, skip: [] } : decodeToken(config.StartingToken);
  let remaining = config.MaxItems ?? Number.POSITIVE_INFINITY;
  let pageMarker = start.marker; // the Marker that fetched the current page
  const skip = new Set(start.skip);
  for await (const page of fetchFrom(start.marker)) {
    const skipAtStart = [...skip];
    const items: T[] = [];
    let cut = false;
    for (const item of page.items) {
      const id = idOf(item);
      if (skip.delete(id)) continue; // yielded before the token was made
      if (items.length === remaining) {
        cut = true;
        break;
      }
      items.push(item);
    }
    if (cut) {
      // MaxItems cuts inside this page: resume at the same Marker, skipping by id
      // what was yielded from it (and what the token skipped already).
      yield { items, IsTruncated: true, NextToken: encodeToken({ marker: pageMarker, skip: [...skipAtStart, ...items.map(idOf)] }) };
      return;
    }
    remaining -= items.length;
    // A server that answers the Marker it was asked with makes no progress: this page
    // is the last one (returning closes the SDK paginator before it asks again). A
    // NextToken at that Marker would have a caller that follows it fetch the same
    // place again with every iteration, forever.
    const more = page.marker !== undefined && page.marker !== pageMarker;
    // Ids of the token not met yet stay skipped: a smaller page size spreads them over several pages.
    const next = more ? encodeToken({ marker: page.marker, skip: [...skip] }) : undefined;
    yield next === undefined ? { items, IsTruncated: false } : { items, IsTruncated: true, NextToken: next };
    if (!more || remaining === 0) return;
    pageMarker = page.marker;
  }
}

/**
 * An iteration's answers from `marker`, as items and the Marker to go on from. When it
 * starts at the beginning and `first` is given (the answer to its first request, asked
 * earlier by the caller), that answer is its first page and `ask` goes on from its Marker.
 */
async function* answersFrom<A extends { IsTruncated?: boolean | undefined; Marker?: string | undefined }, T>(
  marker: string | undefined,
  first: Promise<A> | undefined,
  itemsOf: (answer: A) => T[] | undefined,
  ask: (from: string | undefined) => AsyncIterable<A>,
): AsyncGenerator<{ items: T[]; marker: string | undefined }> {
  let from = marker;
  if (from === undefined && first) {
    const p = await first;
    yield { items: itemsOf(p) ?? [], marker: p.IsTruncated ? p.Marker : undefined };
    if (!p.IsTruncated || p.Marker === undefined) return;
    from = p.Marker;
  }
  for await (const p of ask(from)) yield { items: itemsOf(p) ?? [], marker: p.IsTruncated ? p.Marker : undefined };
}

/**
 * Pages one user's access keys like boto3's ListAccessKeys paginator.
 * PageSize is the MaxItems sent on each request; MaxItems caps the whole iteration.
 * `first`: the answer to this iteration's first request (ListAccessKeys with MaxItems =
 * PageSize, no Marker), asked earlier by the caller; used when the iteration starts at
 * the beginning, instead of asking it again.
 */
export async function* paginateAccessKeys(
  client: IAMClient,
  params: { UserName: string; PaginationConfig?: PaginationConfig },
  send: SendOptions = {},
  first?: Promise<ListAccessKeysCommandOutput>,
): AsyncGenerator<AccessKeysPage> {
  const config = params.PaginationConfig ?? {};
  const fetchFrom = (marker: string | undefined) =>
    answersFrom(marker, first, (p) => p.AccessKeyMetadata, (from) =>
      paginateListAccessKeys(
        { client, pageSize: config.PageSize, startingToken: from },
        { UserName: params.UserName }, // a fresh input object: the SDK paginator writes into it
        send,
      ),
    );
  for await (const page of truncate(config, (key: AccessKeyMetadata) => key.AccessKeyId ?? '', fetchFrom)) {
    yield { AccessKeyMetadata: page.items, IsTruncated: page.IsTruncated, ...(page.NextToken ? { NextToken: page.NextToken } : {}) };
  }
}

/**
 * Pages the account's users like boto3's ListUsers paginator (PathPrefix, PageSize, MaxItems, StartingToken).
 * `first`: the answer to this iteration's first request (ListUsers with PathPrefix and
 * MaxItems = PageSize, no Marker), asked earlier by the caller; used when the iteration
 * starts at the beginning, instead of asking it again.
 */
export async function* paginateUsers(
  client: IAMClient,
  params: { PathPrefix?: string; PaginationConfig?: PaginationConfig },
  send: SendOptions = {},
  first?: Promise<ListUsersCommandOutput>,
): AsyncGenerator<UsersPage> {
  const config = params.PaginationConfig ?? {};
  const fetchFrom = (marker: string | undefined) =>
    answersFrom(marker, first, (p) => p.Users, (from) =>
      paginateListUsers({ client, pageSize: config.PageSize, startingToken: from }, params.PathPrefix === undefined ? {} : { PathPrefix: params.PathPrefix }, send),
    );
  for await (const page of truncate(config, (user: User) => user.UserId ?? '', fetchFrom)) {
    yield { Users: page.items, IsTruncated: page.IsTruncated, ...(page.NextToken ? { NextToken: page.NextToken } : {}) };
  }
}
