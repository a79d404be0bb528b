/**
 * The seed's paginators (boto3's ListAccessKeys / ListUsers paginators), built on
 * the SDK's own paginators. A page is `{ <items>, IsTruncated, NextToken }` where
 * NextToken resumes exactly after the last item yielded, even when MaxItems cut
 * inside a server page: like boto3, the token then holds the server's Marker plus
 * how many items of that page to skip. Starting from any NextToken yields exactly
 * the remaining items, in order. These tokens are what the checkpoint stores.
 */
import {
  paginateListAccessKeys,
  paginateListUsers,
  type AccessKeyMetadata,
  type IAMClient,
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
  /** Items of that page already consumed. */
  readonly skip: number;
}

const TOKEN_PREFIX = 'ike1.';

/** Encodes a position as an opaque NextToken. */
export function encodeToken(position: Position): string {
  const body = JSON.stringify({ m: position.marker ?? null, s: position.skip });
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
  const p = parsed as { m?: unknown; s?: unknown };
  if (typeof p !== 'object' || p === null || !(p.m === null || typeof p.m === 'string') || !Number.isSafeInteger(p.s) || (p.s as number) < 0) {
    throw invalid();
  }
  return { marker: p.m ?? undefined, skip: p.s as number };
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
 * items already consumed at the starting position, stops at MaxItems, and builds
 * the NextToken of every yielded page.
 */
async function* truncate<T>(
  config: PaginationConfig,
  fetchFrom: (marker: string | undefined) => ServerPages<T>,
): AsyncGenerator<{ items: T[]; IsTruncated: boolean; NextToken?: string }> {
  validateConfig(config);
  const start = config.StartingToken === undefined ? { marker: undefined, skip: 0 } : decodeToken(config.StartingToken);
  let remaining = config.MaxItems ?? Number.POSITIVE_INFINITY;
  let pageMarker = start.marker; // the Marker that fetched the current page
  let skip = start.skip;
  for await (const page of fetchFrom(start.marker)) {
    const available = page.items.slice(skip);
    const consumedBefore = skip;
    skip = 0;
    if (available.length > remaining) {
      // MaxItems cuts inside this page: resume at the same Marker, skipping what we yield.
      const items = available.slice(0, remaining);
      yield { items, IsTruncated: true, NextToken: encodeToken({ marker: pageMarker, skip: consumedBefore + items.length }) };
      return;
    }
    remaining -= available.length;
    const more = page.marker !== undefined;
    const next = more ? encodeToken({ marker: page.marker, skip: 0 }) : undefined;
    yield next === undefined ? { items: available, IsTruncated: false } : { items: available, IsTruncated: true, NextToken: next };
    if (!more || remaining === 0) return;
    pageMarker = page.marker;
  }
}

/**
 * Pages one user's access keys like boto3's ListAccessKeys paginator.
 * PageSize is the MaxItems sent on each request; MaxItems caps the whole iteration.
 */
export async function* paginateAccessKeys(
  client: IAMClient,
  params: { UserName: string; PaginationConfig?: PaginationConfig },
  send: SendOptions = {},
): AsyncGenerator<AccessKeysPage> {
  const config = params.PaginationConfig ?? {};
  const fetchFrom = async function* (marker: string | undefined) {
    const pages = paginateListAccessKeys(
      { client, pageSize: config.PageSize, startingToken: marker, stopOnSameToken: true },
      { UserName: params.UserName }, // a fresh input object: the SDK paginator writes into it
      send,
    );
    for await (const p of pages) yield { items: p.AccessKeyMetadata ?? [], marker: p.IsTruncated ? p.Marker : undefined };
  };
  for await (const page of truncate(config, fetchFrom)) {
    yield { AccessKeyMetadata: page.items, IsTruncated: page.IsTruncated, ...(page.NextToken ? { NextToken: page.NextToken } : {}) };
  }
}

/** Pages the account's users like boto3's ListUsers paginator (PathPrefix, PageSize, MaxItems, StartingToken). */
export async function* paginateUsers(
  client: IAMClient,
  params: { PathPrefix?: string; PaginationConfig?: PaginationConfig },
  send: SendOptions = {},
): AsyncGenerator<UsersPage> {
  const config = params.PaginationConfig ?? {};
  const fetchFrom = async function* (marker: string | undefined) {
    const input = params.PathPrefix === undefined ? {} : { PathPrefix: params.PathPrefix };
    const pages = paginateListUsers({ client, pageSize: config.PageSize, startingToken: marker, stopOnSameToken: true }, input, send);
    for await (const p of pages) yield { items: p.Users ?? [], marker: p.IsTruncated ? p.Marker : undefined };
  };
  for await (const page of truncate(config, fetchFrom)) {
    yield { Users: page.items, IsTruncated: page.IsTruncated, ...(page.NextToken ? { NextToken: page.NextToken } : {}) };
  }
}
