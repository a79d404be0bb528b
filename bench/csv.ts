/**
 * Reads back a column of a published CSV file, to check an export key by key.
 * The files hold no field with a line break (IAM names cannot), so a quote-aware
 * split per line is enough here.
 */
import { readFile } from 'node:fs/promises';

/** Splits one RFC 4180 line into fields (quotes removed, doubled quotes undone). */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  fields.push(field);
  return fields;
}

/** Every value of `column` in the CSV files, in file order. */
export async function readCsvColumn(files: readonly string[], column: string): Promise<string[]> {
  const values: string[] = [];
  for (const file of files) {
    const [header, ...lines] = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');
    const index = splitCsvLine(header ?? '').indexOf(column);
    if (index < 0) throw new Error(`${file}: no column ${column}`);
    for (const line of lines) values.push(splitCsvLine(line)[index]!);
  }
  return values;
}
