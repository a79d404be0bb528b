/**
 * The README's table of each column's SQL type per dialect, rendered from the
 * same type map the templates use (schemas/generate.ts writes it into
 * schemas/README.md, and its --check fails when the two differ).
 */
import { LATEST_SCHEMA_VERSION, schemaSpec, type SchemaSpec, type SchemaVersion } from '../schema-spec.ts';
import { ATHENA_CSV_VIEW_TYPES, DIALECT_NAMES, DIALECTS, SQL_TYPES } from './types.ts';

/** A Markdown table: one row per column of `version` (or a schema: the partition column last), one column per dialect. */
export function renderTypeTable(version: SchemaVersion | SchemaSpec = LATEST_SCHEMA_VERSION): string {
  const schema = typeof version === 'number' ? schemaSpec(version) : version;
  const rows = [
    ...schema.columns.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable, note: '' })),
    ...(schema.partition === undefined ? [] : [{ ...schema.partition, nullable: false, note: ' (partition)' }]),
  ];
  const heads = ['column', 'schema type', 'nullable', ...DIALECTS.map((d) => DIALECT_NAMES[d]), 'Athena, CSV view'];
  const lines = [
    `| ${heads.join(' | ')} |`,
    `| ${heads.map(() => '---').join(' | ')} |`,
    ...rows.map(
      (r) =>
        `| ${r.name}${r.note} | ${r.type} | ${r.nullable ? 'yes' : 'no'} | ${DIALECTS.map((d) => `\`${SQL_TYPES[d][r.type]}\``).join(' | ')} | \`${ATHENA_CSV_VIEW_TYPES[r.type]}\` |`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}
