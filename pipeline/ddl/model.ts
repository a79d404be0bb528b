/**
 * What every dialect's template starts from: the options checked once (all
 * problems together, as CONFIG_INVALID), and the schema file turned into the
 * facts a template needs (columns in files, the partition column, where the
 * files are). Templates only lay these out in their dialect's syntax.
 */
import { ACCOUNTS_SPEC, LATEST_SCHEMA_VERSION, SCHEMA_VERSIONS, schemaFileName, schemaSpec, type ColumnSpec, type PartitionSpec, type SchemaSpec, type SchemaVersion } from '../schema-spec.ts';
import { ExportError } from '../errors.ts';
import { FORMAT_EXTENSION, FORMATS, type Format } from '../sinks/index.ts';
import { DIALECTS, type Dialect } from './types.ts';

/** What `renderDdl` is asked for. */
export interface DdlOptions {
  readonly dialect: Dialect;
  /** The format of the data files (`--format` of the export). */
  readonly format: Format;
  /**
   * The dataset root: the export's `--out`, a local path or a URI (s3://, gs://...).
   * Default `./export` (the export's default) for DuckDB and PostgreSQL; required
   * for Athena (s3://), BigQuery (gs://) and Snowflake (s3://, gcs://, azure://).
   */
  readonly location?: string;
  /** Table (or view) name, optionally qualified (`analytics.access_keys`); default the schema's name. */
  readonly table?: string;
  /** Schema version whose columns are declared; default the latest (2). */
  readonly schemaVersion?: SchemaVersion;
  /** Which dataset of the root: access_keys (default) or accounts (one row per account and snapshot). */
  readonly dataset?: Dataset;
}

/** The datasets an export writes beside each other, each with its own schema. */
export const DATASETS = ['access_keys', 'accounts'] as const;
export type Dataset = (typeof DATASETS)[number];

/** The facts a dialect template lays out. */
export interface TableModel {
  readonly dialect: Dialect;
  readonly format: Format;
  readonly schema: SchemaSpec;
  /** e.g. `schemas/access_keys.v2.json`, for the generated SQL's header. */
  readonly schemaFile: string;
  /** The table or view to create, as given (validated identifier parts). */
  readonly table: string;
  /** The last part of `table`, to name companions (a stage, a load table). */
  readonly tableBase: string;
  /** The dataset's folder under the root: `<root>/access_keys`, without a trailing slash. */
  readonly datasetUri: string;
  /** File extension with its dot. */
  readonly extension: string;
  /** The columns inside the data files of this version, in file order. */
  readonly columns: readonly ColumnSpec[];
  /** The partition column (from the folder name), if the version has one. */
  readonly partition: PartitionSpec | undefined;
  /**
   * Every column that a data file of this or an earlier version holds, by name
   * (v1 files hold snapshot_id): what a reader that combines versions by name
   * must be told the type of, so that no file's column is guessed.
   */
  readonly fileColumnsOfAllVersions: readonly ColumnSpec[];
  /** Columns that identify a row across the dataset (partition first), for a primary key. */
  readonly key: readonly string[];
}

/** Default dataset root, the export's own `--out` default. */
export const DEFAULT_LOCATION = './export';

/** URI schemes each dialect can read a dataset root from; undefined: any path. */
const LOCATION_SCHEMES: Readonly<Record<Dialect, readonly string[] | undefined>> = {
  duckdb: undefined,
  postgres: undefined,
  athena: ['s3://'],
  bigquery: ['gs://'],
  snowflake: ['s3://', 'gcs://', 'azure://'],
};

/** Why a dialect wants a given scheme, for the message. */
const LOCATION_HINT: Readonly<Partial<Record<Dialect, string>>> = {
  athena: 'Athena reads S3: pass the export\'s --out s3://bucket/prefix',
  bigquery: 'BigQuery external tables read Cloud Storage: copy the dataset root to gs://bucket/prefix and pass that',
  snowflake: 'a Snowflake stage points at cloud storage: pass the export\'s --out s3://bucket/prefix (or gcs://, azure://)',
};

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Options as they arrive from argv or an untyped caller, before they are checked. */
export interface UncheckedDdlOptions {
  readonly dialect?: string;
  readonly format?: string;
  readonly location?: string;
  readonly table?: string;
  readonly schemaVersion?: number;
  readonly dataset?: string;
}

/**
 * Every problem with `options`, one line each naming the flag, in flag order;
 * empty when they are fine. The CLI parser and `renderDdl` share it.
 */
export function problemsWith(options: UncheckedDdlOptions): string[] {
  const problems: string[] = [];
  const dialect = options.dialect;
  const known = DIALECTS.find((d) => d === dialect);
  if (dialect === undefined) problems.push(`--dialect is required: one of ${DIALECTS.join(', ')}`);
  else if (known === undefined) problems.push(`--dialect must be one of ${DIALECTS.join(', ')}, got ${JSON.stringify(dialect)}`);

  const location = options.location;
  if (location !== undefined) {
    if (location.trim() === '' || /[\u0000-\u001f]/.test(location)) problems.push(`--location must be a path or URI, got ${JSON.stringify(location)}`);
    else if (known !== undefined) {
      const schemes = LOCATION_SCHEMES[known];
      if (schemes !== undefined && !schemes.some((s) => location.startsWith(s))) {
        problems.push(`--location for --dialect ${known} must start with ${schemes.join(' or ')}, got ${JSON.stringify(location)}: ${LOCATION_HINT[known]}`);
      }
    }
  } else if (known !== undefined && LOCATION_SCHEMES[known] !== undefined) {
    problems.push(`--location is required for --dialect ${known}: ${LOCATION_HINT[known]}`);
  }

  const format = options.format;
  if (!FORMATS.some((f) => f === format)) problems.push(`--format must be parquet or csv, got ${JSON.stringify(format)}`);
  else if (known === 'postgres' && format !== 'csv') {
    problems.push('--format must be csv for --dialect postgres: PostgreSQL loads the CSV files with COPY (export with --format csv)');
  }

  const table = options.table;
  if (table !== undefined && (table.split('.').length > 3 || !table.split('.').every((part) => IDENTIFIER.test(part)))) {
    problems.push(`--table must be a name of letters, digits and _ (optionally schema.table), got ${JSON.stringify(table)}`);
  }

  const dataset = options.dataset;
  if (dataset !== undefined && !DATASETS.some((d) => d === dataset)) problems.push(`--dataset must be one of ${DATASETS.join(', ')}, got ${JSON.stringify(dataset)}`);

  const version = options.schemaVersion;
  if (version !== undefined && !SCHEMA_VERSIONS.some((v) => v === version)) problems.push(`schema version must be one of ${SCHEMA_VERSIONS.join(', ')}, got ${String(version)}`);
  return problems;
}

/** Checks `raw` and returns it typed; throws CONFIG_INVALID listing every problem. */
export function checkDdlOptions(raw: UncheckedDdlOptions): DdlOptions {
  const problems = problemsWith(raw);
  const dialect = DIALECTS.find((d) => d === raw.dialect);
  const format = FORMATS.find((f) => f === raw.format);
  if (problems.length > 0 || dialect === undefined || format === undefined) throw new ExportError('CONFIG_INVALID', problems.join('\n'));
  return {
    dialect,
    format,
    ...(raw.location === undefined ? {} : { location: raw.location }),
    ...(raw.table === undefined ? {} : { table: raw.table }),
    ...(raw.schemaVersion === undefined ? {} : { schemaVersion: SCHEMA_VERSIONS.find((v) => v === raw.schemaVersion)! }),
    ...(raw.dataset === undefined ? {} : { dataset: DATASETS.find((d) => d === raw.dataset)! }),
  };
}

/** Checks `input` (CONFIG_INVALID listing every problem) and builds the model. */
export function tableModel(input: DdlOptions): TableModel {
  // Checked again: a caller in plain JS (or with a cast) may pass anything.
  const options = checkDdlOptions(input);
  const version = options.schemaVersion ?? LATEST_SCHEMA_VERSION;
  const accounts = options.dataset === 'accounts';
  // The accounts dataset has one version so far: its own schema file.
  const schema = accounts ? ACCOUNTS_SPEC : schemaSpec(version);
  const table = options.table ?? schema.name;
  const root = (options.location ?? DEFAULT_LOCATION).replace(/\/+$/, '');
  const partition = schema.partition;

  const fileColumns = new Map<string, ColumnSpec>();
  for (const spec of accounts ? [schema] : SCHEMA_VERSIONS.filter((n) => n <= version).map((v) => schemaSpec(v))) {
    for (const column of spec.columns) if (!fileColumns.has(column.name)) fileColumns.set(column.name, column);
  }
  return {
    dialect: options.dialect,
    format: options.format,
    schema,
    schemaFile: `schemas/${accounts ? `${schema.name}.v${schema.version}.json` : schemaFileName(version)}`,
    table,
    tableBase: table.split('.').at(-1)!,
    datasetUri: `${root}/${schema.name}`,
    extension: FORMAT_EXTENSION[options.format],
    columns: schema.columns,
    partition,
    fileColumnsOfAllVersions: [...fileColumns.values()],
    key: [...(partition === undefined ? [] : [partition.name]), ...(schema.unique_key ?? [])],
  };
}

/** A column of the table as a template lays it out: data columns in file order, then the partition column. */
export interface TableColumn {
  readonly name: string;
  readonly type: ColumnSpec['type'];
  readonly nullable: boolean;
  readonly description: string;
  /** Whether the value comes from the folder name rather than the file. */
  readonly isPartition: boolean;
}

/**
 * The table's columns: the data columns, then the partition column last, where
 * Hive, Spark, pyarrow, polars and DuckDB put a partition column, so every
 * dialect shows the same order.
 */
export function tableColumns(model: TableModel): TableColumn[] {
  const data = model.columns.map((c) => ({ ...c, isPartition: false }));
  const p = model.partition;
  return p === undefined ? data : [...data, { ...p, nullable: false, isPartition: true }];
}

/** The text of a one-line SQL comment: the schema's description, never breaking the line. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
