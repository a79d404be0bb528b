/**
 * The record schemas as typed data: every version of `access_keys.v<N>.json`,
 * checked once when this module loads. Whatever derives from the columns (the
 * TypeScript record types, the DDL of every dialect, the README's type table)
 * reads them here, so a new version is one JSON file plus one line below.
 */
import v1 from '../schemas/access_keys.v1.json' with { type: 'json' };
import v2 from '../schemas/access_keys.v2.json' with { type: 'json' };
import accountsV1 from '../schemas/accounts.v1.json' with { type: 'json' };

/** The logical column types; each consumer maps them (Parquet, CSV, SQL dialects). */
export const COLUMN_TYPES = ['string', 'timestamp', 'int32', 'boolean'] as const;

/** A logical column type. */
export type ColumnType = (typeof COLUMN_TYPES)[number];

/** One column inside the data files. */
export interface ColumnSpec {
  readonly name: string;
  readonly type: ColumnType;
  readonly nullable: boolean;
  readonly description: string;
}

/**
 * The partition column: its value is the folder name `<name>=<value>/` (Hive
 * style), never a column inside the data files. It is never null.
 */
export interface PartitionSpec {
  readonly name: string;
  readonly type: ColumnType;
  readonly description: string;
}

/** One schema file. */
export interface SchemaSpec {
  readonly name: string;
  readonly version: number;
  readonly description: string;
  /** The order of the rows in every data file. */
  readonly sort_key: readonly string[];
  /** Columns that identify a row within one partition (absent in v1). */
  readonly unique_key?: readonly string[];
  /** The partition column (absent in v1, where snapshot_id was a data column too). */
  readonly partition?: PartitionSpec;
  /** The columns inside the data files, in file order. */
  readonly columns: readonly ColumnSpec[];
}

/** The schema versions, oldest first. */
export const SCHEMA_VERSIONS = [1, 2] as const;

/** A schema version that has a file in schemas/. */
export type SchemaVersion = (typeof SCHEMA_VERSIONS)[number];

/** The version new snapshots are written with. */
export const LATEST_SCHEMA_VERSION: SchemaVersion = 2;

const SPECS: Readonly<Record<SchemaVersion, SchemaSpec>> = {
  1: checkedSpec(v1, 'access_keys.v1.json'),
  2: checkedSpec(v2, 'access_keys.v2.json'),
};

/** The schema of `version`. */
export function schemaSpec(version: SchemaVersion): SchemaSpec {
  return SPECS[version];
}

/** The datasets a snapshot publishes: access_keys (versioned above) and accounts. */
export const DATASETS = ['access_keys', 'accounts'] as const;
export type Dataset = (typeof DATASETS)[number];

/** The accounts dataset: one row per account of a snapshot. */
export const ACCOUNTS_SPEC: SchemaSpec = checkedSpec(accountsV1, 'accounts.v1.json');

/** File name of the schema of `version`, inside schemas/. */
export function schemaFileName(version: SchemaVersion): string {
  return `access_keys.v${version}.json`;
}

/**
 * Throws when `json` is not a well-formed schema: unknown types, duplicate
 * names, a sort or unique key naming no data column, a partition column that is
 * also a data column. A malformed schema file is a bug of this repository, so
 * this fails at import time rather than producing wrong DDL later.
 */
export function checkedSpec(json: unknown, file: string): SchemaSpec {
  const problems: string[] = [];
  const spec = json as SchemaSpec;
  const isType = (t: unknown): boolean => (COLUMN_TYPES as readonly unknown[]).includes(t);
  if (typeof spec.name !== 'string' || !Number.isInteger(spec.version)) problems.push('name and an integer version are required');
  const names = new Set<string>();
  for (const c of Array.isArray(spec.columns) ? spec.columns : []) {
    if (!/^[a-z][a-z0-9_]*$/.test(c.name)) problems.push(`column name ${JSON.stringify(c.name)} is not snake_case`);
    if (names.has(c.name)) problems.push(`column ${c.name} appears twice`);
    names.add(c.name);
    if (!isType(c.type)) problems.push(`column ${c.name} has an unknown type ${JSON.stringify(c.type)}`);
    if (typeof c.nullable !== 'boolean') problems.push(`column ${c.name} needs nullable true or false`);
    if (typeof c.description !== 'string' || c.description === '') problems.push(`column ${c.name} needs a description`);
  }
  if (names.size === 0) problems.push('columns must list at least one column');
  for (const key of ['sort_key', 'unique_key'] as const) {
    for (const name of spec[key] ?? []) if (!names.has(name)) problems.push(`${key} names ${name}, which is not a data column`);
  }
  if (spec.partition !== undefined) {
    if (names.has(spec.partition.name)) problems.push(`partition ${spec.partition.name} is also a data column`);
    if (!isType(spec.partition.type)) problems.push(`partition ${spec.partition.name} has an unknown type`);
  }
  if (problems.length > 0) throw new Error(`schemas/${file} is malformed:\n${problems.join('\n')}`);
  return spec;
}
