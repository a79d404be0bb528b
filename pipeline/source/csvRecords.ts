/**
 * CSV records (RFC 4180) from text that arrives in pieces: what the credential report
 * index reads. Fields are split at commas; a field in double quotes may hold commas,
 * line breaks and doubled quotes; CRLF and LF both end a record; empty lines are
 * skipped; records may differ in length. A record without a quote, the report's
 * every row but those of user names with a comma, is one `split`.
 *
 * Why not csv-parse: its streaming parser takes every character through a state
 * machine of options, and hands on one record per await. Indexing a 2,000-user report
 * took 72-89 ms in a fresh process with it, 29-32 ms with this; that time is taken on
 * the one thread every call's answer waits for, as the fan-out starts: the 2,000-user,
 * c=16 export's calls took ~42 ms longer with the report than without it before, ~25 ms
 * longer now (the rest is the report's download, save and lookups).
 */
import { StringDecoder } from 'node:string_decoder';

const QUOTE = 0x22;
const COMMA = 0x2c;
const CR = 0x0d;
const LF = 0x0a;

/** The bytes of a CSV: one string, or chunks in order (from the network or a store). */
export type CsvSource = string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** Records handed on at once: an await per batch, not per record, and few alive at a time. */
const BATCH = 128;

/**
 * The records of `source`, each an array of its fields, in batches of up to BATCH (a
 * batch never waits for the next piece of text). Throws on a quoted field that never ends.
 */
export async function* csvRecords(source: CsvSource): AsyncGenerator<string[][]> {
  const reader = new RecordReader();
  if (typeof source === 'string') {
    yield* batches(reader.take(source, true));
    return;
  }
  const decoder = new StringDecoder('utf8');
  for await (const chunk of source) yield* batches(reader.take(decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)), false));
  yield* batches(reader.take(decoder.end(), true));
}

function* batches(records: Iterable<string[]>): Generator<string[][]> {
  let batch: string[][] = [];
  for (const record of records) {
    batch.push(record);
    if (batch.length === BATCH) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/** Splits text into records, keeping an unfinished last record for the next piece. */
class RecordReader {
  #rest = '';

  /** The whole records of what came so far plus `text`; at `last`, the final one too. */
  *take(text: string, last: boolean): Generator<string[]> {
    const s = this.#rest + text;
    let at = 0;
    for (;;) {
      const nl = s.indexOf('\n', at);
      const end = nl < 0 ? s.length : nl;
      if (nl < 0 && !last) break;
      if (at >= s.length) break;
      const quote = s.indexOf('"', at);
      if (quote < 0 || quote >= end) {
        // No quote before the line ends: the record is the line.
        const stop = end > at && s.charCodeAt(end - 1) === CR ? end - 1 : end;
        if (stop > at) yield s.slice(at, stop).split(',');
        at = end + 1;
        continue;
      }
      const parsed = quoted(s, at, last);
      if (parsed === undefined) break; // its closing quote is in a later piece
      yield parsed.fields;
      at = parsed.next;
    }
    this.#rest = at >= s.length ? '' : s.slice(at);
  }
}

/**
 * The record that starts at `from` and holds a quote: its fields and where the next
 * record starts; undefined when it does not end within `s` and more text may come.
 */
function quoted(s: string, from: number, last: boolean): { fields: string[]; next: number } | undefined {
  const fields: string[] = [];
  let field = '';
  let i = from;
  for (;;) {
    if (s.charCodeAt(i) === QUOTE) {
      // A quoted field: up to the quote that is not doubled.
      i++;
      for (;;) {
        const q = s.indexOf('"', i);
        if (q < 0) {
          if (last) throw new Error(`CSV: a quoted field that never ends (from character ${from})`);
          return undefined;
        }
        field += s.slice(i, q);
        if (s.charCodeAt(q + 1) === QUOTE) {
          field += '"';
          i = q + 2;
          continue;
        }
        if (q + 1 === s.length && !last) return undefined; // a doubled quote may follow
        i = q + 1;
        break;
      }
    }
    // The rest of the field, unquoted, up to a comma or the line's end.
    let j = i;
    for (; j < s.length; j++) {
      const c = s.charCodeAt(j);
      if (c === COMMA || c === LF || (c === CR && s.charCodeAt(j + 1) === LF)) break;
    }
    if (j === s.length && !last) return undefined;
    field += s.slice(i, j);
    fields.push(field);
    field = '';
    const c = s.charCodeAt(j);
    if (c === COMMA) {
      i = j + 1;
      continue;
    }
    // The record ends (at CRLF, LF or the text's end).
    const next = c === CR ? j + 2 : j + 1;
    return { fields, next };
  }
}
