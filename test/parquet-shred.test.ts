/**
 * The rows of a Parquet file are shredded by pipeline/sinks/parquet.ts (FlatRowsWriter),
 * not by the library, for every row but the first and the last of a row group: the file
 * must be the bytes the library's own appendRow writes, for every schema this project
 * writes and every size around a row group's edges, and a bad value must fail the
 * same way.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import type { ParquetValue } from 'parquetjs-lite';
import { parquetEncoder, WRITER_OPTIONS, type ParquetColumn, type RowShredder } from '../pipeline/sinks/parquet.ts';
import { ACCOUNTS_SPEC, schemaSpec } from '../pipeline/schema-spec.ts';
import { ExportError } from '../pipeline/errors.ts';
import { mulberry32 } from './fake-iam/random.ts';

type Row = Record<string, ParquetValue>;

const GROUP = WRITER_OPTIONS.rowGroupSize!;
const STRINGS = ['alice', 'bob', 'ops/é', '€uro', '🔑 key', '', 'a'.repeat(300), 'AKIA0000000000000001'];

/** A value of `column` (null at times when it is nullable), from `random`. */
function valueOf(column: ParquetColumn, random: () => number): ParquetValue {
  if (column.nullable && random() < 0.3) return null;
  switch (column.type) {
    case 'string':
      return STRINGS[Math.floor(random() * STRINGS.length)]! + String(Math.floor(random() * 50));
    case 'timestamp':
      return new Date(Date.UTC(2010, 0, 1) + Math.floor(random() * 5e11));
    case 'int32':
      return Math.floor(random() * 20000) - 1000;
    case 'boolean':
      return random() < 0.5;
  }
}

function rowsOf(columns: readonly ParquetColumn[], count: number, seed = 7): Row[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => Object.fromEntries(columns.map((c) => [c.name, valueOf(c, random)])));
}

async function encode(columns: readonly ParquetColumn[], rows: readonly Row[], shredder: RowShredder): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of parquetEncoder<Row>(columns, { metadata: { snapshot_id: '20261130T000000Z' } }, shredder)(Readable.from(rows))) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function failure(columns: readonly ParquetColumn[], rows: readonly Row[], shredder: RowShredder): Promise<unknown> {
  try {
    await encode(columns, rows, shredder);
  } catch (err) {
    return err;
  }
  assert.fail(`the ${shredder} shredder wrote a file of a bad row`);
}

/** Every column type, nullable and not, as no schema of the project has them all. */
const EVERY_TYPE: readonly ParquetColumn[] = [
  { name: 'id', type: 'string', nullable: false },
  { name: 'note', type: 'string', nullable: true },
  { name: 'at', type: 'timestamp', nullable: false },
  { name: 'seen', type: 'timestamp', nullable: true },
  { name: 'n', type: 'int32', nullable: false },
  { name: 'm', type: 'int32', nullable: true },
  { name: 'on', type: 'boolean', nullable: false },
  { name: 'off', type: 'boolean', nullable: true },
];

const SCHEMAS: readonly (readonly [string, readonly ParquetColumn[]])[] = [
  ['access keys v1', schemaSpec(1).columns],
  ['access keys v2', schemaSpec(2).columns],
  ['accounts', ACCOUNTS_SPEC.columns],
  ['every column type', EVERY_TYPE],
];

describe("the rows of a Parquet file are the library's own bytes", () => {
  for (const [name, columns] of SCHEMAS) {
    for (const count of [0, 1, 2, GROUP - 1, GROUP, GROUP + 1, 3 * GROUP + 17]) {
      test(`${name}, ${count} rows`, async () => {
        const rows = rowsOf(columns, count);
        const ours = await encode(columns, rows, 'flat');
        const library = await encode(columns, rows, 'library');
        assert.equal(ours.length, library.length);
        assert.ok(ours.equals(library), 'the files differ');
      });
    }
  }

  test("all rows but a row group's first and last are shredded here", async () => {
    const shred = createRequire(import.meta.url)('parquetjs-lite/lib/shred.js') as { shredRecord: (...args: unknown[]) => void };
    const original = shred.shredRecord;
    let calls = 0;
    shred.shredRecord = (...args: unknown[]) => {
      calls++;
      original(...args);
    };
    try {
      await encode(EVERY_TYPE, rowsOf(EVERY_TYPE, 3 * GROUP + 17), 'flat');
      assert.equal(calls, 2 * 3 + 1, 'the library shredded more than the edges of the four row groups');
      calls = 0;
      await encode(EVERY_TYPE, rowsOf(EVERY_TYPE, 3 * GROUP + 17), 'library');
      assert.equal(calls, 3 * GROUP + 17);
    } finally {
      shred.shredRecord = original;
    }
  });

  for (const at of [0, 5, GROUP - 1, GROUP + 3]) {
    test(`a bad value at row ${at} fails the file as the library fails it`, async () => {
      const rows = rowsOf(EVERY_TYPE, GROUP + 10);
      for (const [bad, message] of [
        [{ ...rows[at]!, id: null }, 'missing required field: id'],
        [{ ...rows[at]!, n: 'twelve' as unknown as number }, 'invalid value for INT32: twelve'],
        [{ ...rows[at]!, seen: 'yesterday' as unknown as Date }, 'invalid value for TIMESTAMP_MILLIS: yesterday'],
      ] as const) {
        const withBad = rows.map((r, i) => (i === at ? bad : r));
        const ours = await failure(EVERY_TYPE, withBad, 'flat');
        const library = await failure(EVERY_TYPE, withBad, 'library');
        assert.ok(ours instanceof ExportError && library instanceof ExportError);
        assert.equal(ours.message, `parquet writer failed at row ${at}: ${message}`);
        assert.equal(ours.message, library.message);
      }
    });
  }
});
