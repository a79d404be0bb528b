/**
 * The `ddl` subcommand's argv, normalized once like pipeline/config.ts does for
 * the export: defaults, validation, every problem in one CONFIG_INVALID error.
 */
import { parseArgs } from 'node:util';
import { ExportError } from '../errors.ts';
import { checkDdlOptions, problemsWith, type DdlOptions } from './model.ts';
import { DIALECTS } from './types.ts';

/** The flags of `iam-key-export ddl`, as node:util parseArgs declares them. */
export const DDL_OPTIONS = {
  dialect: { type: 'string' },
  location: { type: 'string' },
  format: { type: 'string' },
  table: { type: 'string' },
  dataset: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `iam-key-export ddl --help`. */
export const DDL_HELP = `Usage: iam-key-export ddl --dialect ${DIALECTS.join('|')} [--location URI] [--format parquet|csv] [--table NAME] [--dataset access_keys|accounts]

Prints SQL that makes a warehouse read an exported dataset, generated from schemas/.
  --dialect D     ${DIALECTS.join(', ')}
  --location URI  the dataset root, the export's --out (default ./export; Athena and
                  Snowflake need the s3:// root, BigQuery a gs:// copy of it)
  --format F      the data files' format, parquet (default) or csv (PostgreSQL: csv)
  --table NAME    table or view name, optionally schema.table (default: the dataset's name)
  --dataset D     access_keys (default): one row per key; accounts: one row per account
                  of each snapshot (same snapshot ids, same publish rules)
`;

/** What the `ddl` argv asks for. */
export type DdlCommand = { readonly kind: 'help' } | { readonly kind: 'ddl'; readonly options: DdlOptions };

/**
 * Parses the words after `ddl` into a command. Throws CONFIG_INVALID listing
 * every problem (unknown flags, missing values, values not allowed), one per line.
 */
export function parseDdlCommand(argv: readonly string[]): DdlCommand {
  const problems: string[] = [];
  const { values, tokens } = parseArgs({ args: [...argv], options: DDL_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  let unknownAt = -2; // index of the last unknown option: the word after it is its value, not a stray argument
  for (const t of tokens ?? []) {
    if (t.kind === 'positional') {
      if (t.index !== unknownAt + 1) problems.push(`unexpected argument ${JSON.stringify(t.value)}: iam-key-export ddl takes only --flags (see ddl --help)`);
    } else if (t.kind === 'option') {
      const spec = (DDL_OPTIONS as Record<string, { type: string }>)[t.name];
      if (!spec) {
        unknownAt = t.index;
        problems.push(`unknown option ${t.rawName}: iam-key-export ddl takes --dialect, --location, --format, --table and --dataset`);
      } else if (spec.type === 'string' && t.value === undefined) problems.push(`${t.rawName} needs a value`);
      else if (spec.type === 'boolean' && t.value !== undefined) problems.push(`${t.rawName} takes no value`);
    }
  }
  if (values.help === true) return { kind: 'help' };

  const str = (name: keyof typeof DDL_OPTIONS): string | undefined => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const raw = { dialect: str('dialect'), location: str('location'), format: str('format') ?? 'parquet', table: str('table'), dataset: str('dataset') };
  // A flag given without its value is already reported; do not report it twice.
  const given = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
  const missingValue = new Set(problems.filter((p) => p.endsWith('needs a value')).map((p) => p.split(' ')[0]));
  problems.push(...problemsWith(given).filter((p) => !missingValue.has(p.split(' ')[0])));
  if (problems.length > 0) throw new ExportError('CONFIG_INVALID', problems.join('\n'));
  return { kind: 'ddl', options: checkDdlOptions(given) };
}
