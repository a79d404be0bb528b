/**
 * IAM's Marker pagination: MaxItems validation, opaque markers, page slicing.
 * A marker is base64url JSON naming the last item returned (never a position,
 * so it keeps its meaning when items are added or deleted between pages) and
 * the account's change counter when it was issued (so a fake told to reject
 * stale markers can tell them). Anything the fake did not produce is rejected
 * with ValidationError, as IAM does.
 */
import { IamError } from './errors.ts';

export const DEFAULT_MAX_ITEMS = 100;
export const MAX_MAX_ITEMS = 1000;

/** Where the next page starts, and when the marker was issued. */
export type MarkerState =
  /** ListUsers: the first user whose name sorts after `after`. */
  | { readonly list: 'users'; readonly after: string; readonly gen: number }
  /**
   * ListAccessKeys of the user with id `user`: the first key that sorts after
   * the last one returned, whose CreateDate (epoch ms) was `date` and id `id`.
   */
  | { readonly list: 'keys'; readonly user: string; readonly date: number; readonly id: string; readonly gen: number };

/** One page of a listing. `marker` is set exactly when `isTruncated`. */
export interface Page<T> {
  readonly items: readonly T[];
  readonly isTruncated: boolean;
  readonly marker?: string;
}

const invalidMarker = (): IamError => new IamError('ValidationError', 'Invalid Marker: the marker was not returned by a previous call.');

/** What IAM answers for a marker it no longer honours; the client must restart the listing. */
export const expiredMarker = (): IamError => new IamError('ValidationError', 'Invalid Marker: the marker has expired; start the listing again.');

/** Parses the MaxItems parameter: absent means 100; 1..1000 otherwise. */
export function parseMaxItems(raw: string | null): number {
  if (raw === null) return DEFAULT_MAX_ITEMS;
  if (!/^[0-9]{1,10}$/.test(raw)) return invalidMaxItems(raw, 'be an integer');
  const value = Number(raw);
  if (value < 1) return invalidMaxItems(raw, 'have value greater than or equal to 1');
  if (value > MAX_MAX_ITEMS) return invalidMaxItems(raw, `have value less than or equal to ${MAX_MAX_ITEMS}`);
  return value;
}

function invalidMaxItems(raw: string, constraint: string): never {
  throw new IamError(
    'ValidationError',
    `1 validation error detected: Value '${raw}' at 'maxItems' failed to satisfy constraint: Member must ${constraint}`,
  );
}

/** The opaque marker for a position. */
export function encodeMarker(state: MarkerState): string {
  return Buffer.from(JSON.stringify(state), 'utf8').toString('base64url');
}

/** The position a marker names; ValidationError for anything `encodeMarker` did not make. */
export function decodeMarker(raw: string): MarkerState {
  // Buffer skips characters outside the alphabet; re-encoding catches them.
  const bytes = Buffer.from(raw, 'base64url');
  if (raw.length === 0 || bytes.toString('base64url') !== raw) throw invalidMarker();
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalidMarker();
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalidMarker();
  const state = parsed as Record<string, unknown>;
  const gen = state.gen;
  if (typeof gen !== 'number' || !Number.isSafeInteger(gen) || gen < 0) throw invalidMarker();
  if (state.list === 'users' && typeof state.after === 'string') {
    return { list: 'users', after: state.after, gen };
  }
  if (state.list === 'keys' && typeof state.user === 'string' && Number.isSafeInteger(state.date) && typeof state.id === 'string' && state.id !== '') {
    return { list: 'keys', user: state.user, date: state.date as number, id: state.id, gen };
  }
  throw invalidMarker();
}

/** Decodes a marker that must be of one list kind (a users marker on ListAccessKeys is garbage). */
export function decodeMarkerOf<K extends MarkerState['list']>(raw: string, list: K): Extract<MarkerState, { list: K }> {
  const state = decodeMarker(raw);
  if (state.list !== list) throw invalidMarker();
  return state as Extract<MarkerState, { list: K }>;
}

/** Rejects a marker that decodes but points nowhere in this listing. */
export function rejectMarker(): never {
  throw invalidMarker();
}

/**
 * Up to `maxItems` items of `items` from `start`, with the marker for the rest.
 * `markerAfter` names the page's last item.
 */
export function pageOf<T>(items: readonly T[], start: number, maxItems: number, markerAfter: (last: T) => MarkerState): Page<T> {
  const slice = items.slice(start, start + maxItems);
  const last = slice[slice.length - 1];
  if (last === undefined || start + slice.length >= items.length) return { items: slice, isTruncated: false };
  return { items: slice, isTruncated: true, marker: encodeMarker(markerAfter(last)) };
}
