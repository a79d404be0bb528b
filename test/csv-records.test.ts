/**
 * The credential report's CSV reader (pipeline/source/csvRecords.ts) against csv-parse
 * as the oracle, with the text cut into pieces at every place (inside a quoted field, a
 * doubled quote, a CRLF, a multi-byte character).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'csv-parse/sync';
import { csvRecords } from '../pipeline/source/csvRecords.ts';

async function read(pieces: Iterable<Uint8Array> | string): Promise<string[][]> {
  const rows: string[][] = [];
  for await (const batch of csvRecords(pieces)) rows.push(...batch);
  return rows;
}

const CASES = [
  'a,b,c\n1,2,3\n',
  'a,b\r\n1,2\r\n',
  'x\n\n\ny\n',
  '"a,b",c\n"he said ""hi""",d\n',
  '"multi\nline",z\n"two\r\nbreaks\n",w\n',
  'last,no,newline',
  '"quoted","at the end"',
  '"q"\n',
  'a,"",b\n',
  '"a""",b\r\n"",""\r\n',
  'ümlaut,€,𝄞\n"𝄞,𝄞",x\n',
  ',\n,,\n',
  'user,arn,n\nal,ice,arn:aws:iam::123456789012:user/x,1\n"al,ice",arn:aws:iam::123456789012:user/al,ice,2\n',
  'short\nlonger,row,here\n',
];

test('every record as csv-parse reads it (empty lines skipped, rows of any length), whole and cut at every byte', async () => {
  for (const text of CASES) {
    const want = parse(text, { skip_empty_lines: true, relax_column_count: true }) as string[][];
    assert.deepEqual(await read(text), want, JSON.stringify(text));
    const bytes = Buffer.from(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(await read([bytes.subarray(0, cut), bytes.subarray(cut)]), want, `${JSON.stringify(text)} cut at ${cut}`);
    }
    assert.deepEqual(await read([...bytes].map((b) => Uint8Array.of(b))), want, `${JSON.stringify(text)} a byte at a time`);
  }
});

test('records come in batches of up to 128, none waiting for a later piece; a quoted field that never ends is an error', async () => {
  const batches: number[] = [];
  for await (const batch of csvRecords([Buffer.from('a,b\nc,d\n"e'), Buffer.from('",f\n' + 'g\n'.repeat(300))])) batches.push(batch.length);
  assert.deepEqual(batches, [2, 128, 128, 45]);
  await assert.rejects(read('a,b\n"never ends,c\n'), /quoted field that never ends/);
  await assert.rejects(read([Buffer.from('"open'), Buffer.from(' still')]), /quoted field that never ends/);
});

test('a record is handed on in the batch of the piece it ends in, quoted or not, whatever the piece starts with', async () => {
  const batches = async (pieces: string[]) => {
    const out: string[][][] = [];
    for await (const batch of csvRecords(pieces.map((p) => Buffer.from(p)))) out.push(batch);
    return out;
  };
  // A quoted record whole in the first piece does not wait for the second.
  assert.deepEqual(await batches(['"a,b",c\n"d', 'e",f\n']), [[['a,b', 'c']], [['de', 'f']]]);
  assert.deepEqual(await batches(['x,"y"\n', 'z\n']), [[['x', 'y']], [['z']]]);
  // A piece that starts with an empty line.
  assert.deepEqual(await batches(['a\n', '\nb\n', '\nc\n']), [[['a']], [['b']], [['c']]]);
});

test('a lone CR is part of its field, quoted or not; only LF and CRLF end a record', async () => {
  assert.deepEqual(await read('x\ry,z\n"a",b\rc\n'), [['x\ry', 'z'], ['a', 'b\rc']]);
});

test('a line of a lone CR before LF is empty and skipped (csv-parse makes it a record of "\\r")', async () => {
  assert.deepEqual(await read('a,b\n\r\nc,d\n'), [['a', 'b'], ['c', 'd']]);
});
