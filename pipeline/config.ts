/**
 * Options are normalized here, once: defaults, coercion, validation. Every problem
 * is collected and reported together (one line each, naming the flag and what is
 * allowed); the rest of the program trusts the `Config` type.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ExportError } from './errors.ts';
import { FORMATS, type Format } from './formats.ts';
import { isS3Url, parseS3Url } from './store/url.ts';

/** Where last use comes from (--last-used). */
export const LAST_USED_MODES = ['report', 'api', 'off'] as const;
export type LastUsedMode = (typeof LAST_USED_MODES)[number];

export const STATUSES = ['Active', 'Inactive', 'Expired'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** Values of --sse: S3-managed keys (SSE-S3) or a KMS key (SSE-KMS). */
export const SSE_MODES = ['AES256', 'aws:kms'] as const;
export type SseMode = (typeof SSE_MODES)[number];

/** Options of an `s3://` --out (all unset for a local one). */
export interface S3Settings {
  /** --s3-endpoint-url; else the SDK's chain (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, profile). */
  readonly endpointUrl: string | undefined;
  /** --s3-force-path-style; path style is also used whenever a custom S3 endpoint is set. */
  readonly forcePathStyle: boolean;
  /** --sse: server-side encryption requested on every object written; undefined = the bucket's default. */
  readonly sse: SseMode | undefined;
  /** --sse-kms-key-id: the KMS key of aws:kms (undefined = the account's aws/s3 key). */
  readonly kmsKeyId: string | undefined;
}

export interface Config {
  readonly format: Format;
  readonly out: string;
  readonly concurrency: number;
  readonly pageSize: number;
  readonly pathPrefix: string;
  /** Statuses to keep, in canonical order; empty = all. */
  readonly statuses: readonly string[];
  readonly endpointUrl: string | undefined;
  readonly region: string | undefined;
  readonly profile: string | undefined;
  readonly fresh: boolean;
  readonly maxItems: number | undefined;
  readonly timeBudgetMs: number | undefined;
  /** An unfinished snapshot older than this is discarded rather than resumed. */
  readonly maxSnapshotAgeMs: number;
  readonly allowPartial: boolean;
  /** Which accounts the snapshot covers. */
  readonly accounts: AccountSelection;
  /** How member accounts are reached (with --organization / --accounts). */
  readonly role: RoleConfig | undefined;
  /** Accounts read at once. */
  readonly accountConcurrency: number;
  /** This run's shard of a sharded snapshot (--shards). */
  readonly shard: { readonly index: number; readonly count: number } | undefined;
  /** A snapshot id given by the scheduler (all shards name the same one), else the first run's start. */
  readonly snapshotId: string | undefined;
  /** Keep only the newest N published snapshots (undefined: keep all). */
  readonly keep: number | undefined;
  /** Where last use comes from: the credential report (API where it cannot tell), the API for every key, or nowhere. */
  readonly lastUsed: LastUsedMode;
  readonly maxAttempts: number;
  readonly quiet: boolean;
  readonly logLevel: LogLevel;
  readonly debug: boolean;
  readonly s3: S3Settings;
  readonly tuning: Tuning;
}

/** Which accounts: the credentials' own, the organization's ACTIVE ones, or a list; minus the excluded. */
export type AccountSelection =
  | { readonly mode: 'self' }
  | { readonly mode: 'organization'; readonly exclude: readonly string[] }
  | { readonly mode: 'list'; readonly ids: readonly string[]; readonly exclude: readonly string[] };

/** AssumeRole into member accounts. */
export interface RoleConfig {
  readonly name: string;
  readonly externalId: string | undefined;
  readonly sessionName: string;
}

/** The selection as the checkpoint fingerprints it (a rerun with another selection is another snapshot). */
export function describeSelection(s: AccountSelection): string {
  const exclude = s.mode === 'self' || s.exclude.length === 0 ? '' : ` excluding ${[...s.exclude].sort().join(',')}`;
  return s.mode === 'list' ? `list:${[...s.ids].sort().join(',')}${exclude}` : `${s.mode}${exclude}`;
}

/** Knobs for operators and the benchmark (environment variables, documented in the README). */
export interface Tuning {
  /** IKE_COMMIT_ROWS: commit a part after this many records. */
  readonly commitRows: number;
  /** IKE_COMMIT_USERS: commit once the progress of this many users waits (listed, paged or finished). */
  readonly commitUsers: number;
  /** IKE_COMMIT_MS: commit at least this often while data flows (0 in the environment = only at the end: Infinity here). */
  readonly commitMs: number;
  /** IKE_ROWS_PER_FILE: rows per published data file. */
  readonly rowsPerFile: number;
}

export const DEFAULTS = {
  format: 'parquet' as Format,
  lastUsed: 'report' as LastUsedMode,
  out: './export',
  concurrency: 8,
  pageSize: 100,
  pathPrefix: '/',
  accountConcurrency: 4,
  roleSessionName: 'iam-key-export',
  maxAttempts: 10,
  logLevel: 'info' as LogLevel,
  maxSnapshotAgeMs: 24 * 3_600_000,
  commitRows: 20_000,
  // Listed users count as well as finished ones, and the listing keeps just ahead of the
  // fan-out: a commit every ~2,000 users. At 2,000, a 100,000-user export made 100 parts,
  // whose merge at the publication held more than the commits saved (148-152 MiB against
  // 135-145 MiB; 5 s alone: 146-149 MiB).
  commitUsers: 4_000,
  commitMs: 5_000,
  rowsPerFile: 1_000_000,
};

/** The flags, as node:util parseArgs declares them. */
export const OPTIONS = {
  format: { type: 'string' },
  out: { type: 'string' },
  concurrency: { type: 'string' },
  'page-size': { type: 'string' },
  'path-prefix': { type: 'string' },
  status: { type: 'string', multiple: true },
  'endpoint-url': { type: 'string' },
  region: { type: 'string' },
  profile: { type: 'string' },
  fresh: { type: 'boolean' },
  'max-items': { type: 'string' },
  'time-budget': { type: 'string' },
  'max-snapshot-age': { type: 'string' },
  'allow-partial': { type: 'boolean' },
  'last-used': { type: 'string' },
  keep: { type: 'string' },
  organization: { type: 'boolean' },
  accounts: { type: 'string' },
  'exclude-accounts': { type: 'string' },
  'role-name': { type: 'string' },
  'external-id': { type: 'string' },
  'role-session-name': { type: 'string' },
  'account-concurrency': { type: 'string' },
  shards: { type: 'string' },
  'shard-index': { type: 'string' },
  'snapshot-id': { type: 'string' },
  'max-attempts': { type: 'string' },
  quiet: { type: 'boolean' },
  'log-level': { type: 'string' },
  debug: { type: 'boolean' },
  's3-endpoint-url': { type: 'string' },
  's3-force-path-style': { type: 'boolean' },
  sse: { type: 'string' },
  'sse-kms-key-id': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

export type ParsedCommand =
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'run'; readonly config: Config }
  /** `iam-key-export finalize --out X --snapshot-id ID --shards N`: publish a sharded snapshot whose shards are done. */
  | { readonly kind: 'finalize'; readonly config: Config };

/** Parses argv (without node and script) and the environment into a command; throws CONFIG_INVALID listing every problem. */
export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedCommand {
  const problems: string[] = [];
  const finalize = argv[0] === 'finalize';
  if (finalize) argv = argv.slice(1);
  const { values, tokens } = parseArgs({ args: [...argv], options: OPTIONS, strict: false, allowPositionals: true, tokens: true });
  let unknownAt = -2; // index of the last unknown option: the word after it is its value, not a stray argument
  for (const t of tokens ?? []) {
    if (t.kind === 'positional') {
      if (t.index !== unknownAt + 1) problems.push(`unexpected argument ${JSON.stringify(t.value)}: iam-key-export takes only --flags (see --help)`);
    } else if (t.kind === 'option') {
      const spec = (OPTIONS as Record<string, { type: string }>)[t.name];
      if (!spec) {
        unknownAt = t.index;
        const near = closestOption(t.name);
        problems.push(`unknown option ${t.rawName}${near ? ` (did you mean --${near}?)` : ''}: see --help for the allowed flags`);
      } else if (spec.type === 'string' && t.value === undefined) problems.push(`${t.rawName} needs a value`);
      else if (spec.type === 'boolean' && t.value !== undefined) problems.push(`${t.rawName} takes no value`);
    }
  }
  if (values.help === true) return { kind: 'help' };
  if (values.version === true) return { kind: 'version' };

  const str = (name: keyof typeof OPTIONS): string | undefined => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const int = (name: keyof typeof OPTIONS, min: number, max: number, fallback: number | undefined): number | undefined => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
      problems.push(`--${name} must be an integer ${range}, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return n;
  };

  const formatRaw = str('format') ?? DEFAULTS.format;
  // Enum values are case-insensitive, as --status always was: CSV is csv.
  const format = FORMATS.find((f) => f === formatRaw.trim().toLowerCase());
  if (!format) problems.push(`--format must be csv or parquet, got ${JSON.stringify(formatRaw)}`);

  const out = str('out') ?? DEFAULTS.out;
  if (out.trim() === '') problems.push('--out must be a directory path or an s3://bucket/prefix URL, got an empty string');
  const s3Out = isS3Url(out);
  if (s3Out) {
    const parsed = parseS3Url(out);
    if ('problem' in parsed) problems.push(`--out ${out} ${parsed.problem}`);
  }

  const pathPrefix = str('path-prefix') ?? DEFAULTS.pathPrefix;
  // IAM's pattern for PathPrefix: a slash, then printable ASCII, at most 512 characters.
  if (!/^\/[\u0021-\u007E]*$/.test(pathPrefix) || pathPrefix.length > 512) {
    problems.push(`--path-prefix must start with / and hold only printable ASCII without spaces (at most 512 characters), got ${JSON.stringify(pathPrefix)}`);
  }

  const statuses = new Set<string>();
  for (const raw of (values.status as string[] | undefined) ?? []) {
    for (const part of raw.split(',')) {
      const match = STATUSES.find((s) => s.toLowerCase() === part.trim().toLowerCase());
      if (match) statuses.add(match);
      else problems.push(`--status must be Active, Inactive or Expired (repeatable), got ${JSON.stringify(part)}`);
    }
  }

  const endpointUrl = str('endpoint-url');
  if (endpointUrl !== undefined && !httpUrl(endpointUrl)) problems.push(`--endpoint-url must be an http:// or https:// URL, got ${JSON.stringify(endpointUrl)}`);
  const s3EndpointUrl = str('s3-endpoint-url');
  if (s3EndpointUrl !== undefined && !httpUrl(s3EndpointUrl)) problems.push(`--s3-endpoint-url must be an http:// or https:// URL, got ${JSON.stringify(s3EndpointUrl)}`);
  const sseRaw = str('sse');
  const sse = sseRaw === undefined ? undefined : SSE_MODES.find((m) => m.toLowerCase() === sseRaw.trim().toLowerCase());
  if (sseRaw !== undefined && !sse) problems.push(`--sse must be AES256 or aws:kms, got ${JSON.stringify(sseRaw)}`);
  const kmsKeyId = str('sse-kms-key-id');
  if (kmsKeyId !== undefined && kmsKeyId.trim() === '') problems.push('--sse-kms-key-id must be a KMS key id, ARN or alias, got an empty string');
  else if (kmsKeyId !== undefined && sse !== 'aws:kms' && (sseRaw === undefined || sse)) problems.push('--sse-kms-key-id needs --sse aws:kms');
  const s3Flags = ['s3-endpoint-url', 's3-force-path-style', 'sse', 'sse-kms-key-id'].filter((f) => values[f as keyof typeof OPTIONS] !== undefined);
  // A local --out would silently ignore them: an operator asking for KMS must not get plain files.
  if (!s3Out && s3Flags.length > 0) problems.push(`${s3Flags.map((f) => `--${f}`).join(', ')} apply only to an S3 --out (s3://bucket/prefix), got --out ${out}`);
  const region = str('region');
  if (region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) problems.push(`--region must be an AWS region name such as us-east-1, got ${JSON.stringify(region)}`);
  const profile = str('profile');
  if (profile !== undefined && profile.trim() === '') problems.push('--profile must be a profile name, got an empty string');

  const duration = (name: 'time-budget' | 'max-snapshot-age', fallback: number | undefined): number | undefined => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const ms = parseDuration(raw);
    if (ms === undefined || ms <= 0 || ms > MAX_DURATION_MS) {
      problems.push(`--${name} must be a duration from 1s to 7d such as 90s, 14m, 1h, 1h30m or 2d, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return ms;
  };
  const timeBudgetMs = duration('time-budget', undefined);
  const maxSnapshotAgeMs = duration('max-snapshot-age', DEFAULTS.maxSnapshotAgeMs)!;

  const lastUsedRaw = (str('last-used') ?? DEFAULTS.lastUsed).trim().toLowerCase();
  const lastUsed = LAST_USED_MODES.find((m) => m === lastUsedRaw);
  if (!lastUsed) problems.push(`--last-used must be report, api or off, got ${JSON.stringify(str('last-used'))}`);

  const logLevelRaw = (str('log-level') ?? DEFAULTS.logLevel).trim().toLowerCase();
  const logLevel = (LOG_LEVELS as readonly string[]).includes(logLevelRaw) ? (logLevelRaw as LogLevel) : undefined;
  if (!logLevel) problems.push(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevelRaw)}`);

  const concurrency = int('concurrency', 1, 64, DEFAULTS.concurrency)!;
  const pageSize = int('page-size', 1, 1000, DEFAULTS.pageSize)!;
  const maxItems = int('max-items', 1, Number.MAX_SAFE_INTEGER, undefined);
  const maxAttempts = int('max-attempts', 1, 100, DEFAULTS.maxAttempts)!;
  const keep = int('keep', 1, Number.MAX_SAFE_INTEGER, undefined);
  const accountConcurrency = int('account-concurrency', 1, 64, DEFAULTS.accountConcurrency)!;

  // Accounts: the credentials' own, the organization, or a list (inline or @file).
  const ids = (flag: string, raw: string | undefined): string[] => {
    if (raw === undefined) return [];
    let text = raw;
    if (raw.startsWith('@')) {
      try {
        text = readFileSync(raw.slice(1), 'utf8');
      } catch (err) {
        problems.push(`${flag} ${raw}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        return [];
      }
    }
    const words = text.split(/[\s,]+/).map((w) => w.trim()).filter((w) => w !== '' && !w.startsWith('#'));
    const bad = words.filter((w) => !/^\d{12}$/.test(w));
    if (bad.length > 0) problems.push(`${flag} takes 12-digit account ids (comma-separated, or @file with one per line), got ${JSON.stringify(bad[0])}`);
    return [...new Set(words.filter((w) => /^\d{12}$/.test(w)))];
  };
  const organization = values.organization === true;
  const listed = str('accounts');
  const exclude = ids('--exclude-accounts', str('exclude-accounts'));
  if (organization && listed !== undefined) problems.push('--organization and --accounts are two ways to choose accounts: give one');
  let accounts: AccountSelection = { mode: 'self' };
  if (organization) accounts = { mode: 'organization', exclude };
  else if (listed !== undefined) {
    const list = ids('--accounts', listed);
    if (list.length === 0 && !problems.some((p) => p.startsWith('--accounts'))) problems.push('--accounts names no account');
    accounts = { mode: 'list', ids: list, exclude };
  } else if (str('exclude-accounts') !== undefined) problems.push('--exclude-accounts goes with --organization or --accounts');
  const roleName = str('role-name');
  let role: RoleConfig | undefined;
  if (accounts.mode !== 'self') {
    if (roleName === undefined) problems.push(`--role-name is required with ${organization ? '--organization' : '--accounts'}: the role assumed in every member account (there is no default)`);
    else if (!/^[\w+=,.@-]{1,64}$/.test(roleName)) problems.push(`--role-name must be an IAM role name (1 to 64 of A-Z a-z 0-9 +=,.@_-), got ${JSON.stringify(roleName)}`);
    const sessionName = str('role-session-name') ?? DEFAULTS.roleSessionName;
    if (!/^[\w+=,.@-]{2,64}$/.test(sessionName)) problems.push(`--role-session-name must be 2 to 64 of A-Z a-z 0-9 +=,.@_-, got ${JSON.stringify(sessionName)}`);
    role = { name: roleName ?? '', externalId: str('external-id'), sessionName };
  } else {
    for (const flag of ['role-name', 'external-id', 'role-session-name'] as const) if (str(flag) !== undefined) problems.push(`--${flag} goes with --organization or --accounts`);
  }

  // Shards: --shards N, the index from the flag or the scheduler's environment, and a shared snapshot id.
  const snapshotId = str('snapshot-id');
  if (snapshotId !== undefined && !/^\d{8}T\d{6}Z$/.test(snapshotId)) problems.push(`--snapshot-id must be a snapshot id YYYYMMDDTHHMMSSZ (UTC), e.g. 20261128T111000Z, got ${JSON.stringify(snapshotId)}`);
  else if (snapshotId !== undefined && Number.isNaN(snapshotTimeOf(snapshotId).getTime())) problems.push(`--snapshot-id ${snapshotId} is not a valid time`);
  const shards = int('shards', 1, 1000, undefined);
  let shard: Config['shard'];
  if (shards !== undefined) {
    if (snapshotId === undefined) problems.push('--snapshot-id is required with --shards: every shard must name the same snapshot (e.g. the scheduled time)');
    const source = str('shard-index') !== undefined ? '--shard-index' : env.JOB_COMPLETION_INDEX !== undefined ? 'JOB_COMPLETION_INDEX' : env.AWS_BATCH_JOB_ARRAY_INDEX !== undefined ? 'AWS_BATCH_JOB_ARRAY_INDEX' : undefined;
    const raw = str('shard-index') ?? env.JOB_COMPLETION_INDEX ?? env.AWS_BATCH_JOB_ARRAY_INDEX;
    if (finalize) shard = { index: 0, count: shards };
    else if (source === undefined || raw === undefined) problems.push('--shards needs the shard index: --shard-index I, or JOB_COMPLETION_INDEX (Kubernetes Indexed Job), or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job)');
    else if (!/^\d+$/.test(raw.trim()) || Number(raw) >= shards) problems.push(`${source} must be an integer from 0 to ${shards - 1} (--shards ${shards}), got ${JSON.stringify(raw)}`);
    else shard = { index: Number(raw), count: shards };
  } else if (str('shard-index') !== undefined) problems.push('--shard-index goes with --shards');
  if (finalize && (shards === undefined || snapshotId === undefined)) problems.push('finalize needs --out, --snapshot-id and --shards: the sharded snapshot to publish');

  const envInt = (name: string, min: number, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min) {
      problems.push(`environment variable ${name} must be an integer of at least ${min}, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return n;
  };
  // Applied by the bin after each full collection (bin/heap-flag.js); checked here like every setting.
  envInt('IKE_HEAP_GROWING_PERCENT', 0, 0);
  const tuning: Tuning = {
    commitRows: envInt('IKE_COMMIT_ROWS', 1, DEFAULTS.commitRows),
    commitUsers: envInt('IKE_COMMIT_USERS', 1, DEFAULTS.commitUsers),
    commitMs: envInt('IKE_COMMIT_MS', 0, DEFAULTS.commitMs) || Number.POSITIVE_INFINITY,
    rowsPerFile: envInt('IKE_ROWS_PER_FILE', 1, DEFAULTS.rowsPerFile),
  };

  if (problems.length > 0) throw new ExportError('CONFIG_INVALID', problems.join('\n'));
  return {
    kind: finalize ? 'finalize' : 'run',
    config: {
      format: format!,
      out,
      concurrency,
      pageSize,
      pathPrefix,
      statuses: STATUSES.filter((s) => statuses.has(s)),
      endpointUrl,
      region,
      profile,
      fresh: values.fresh === true,
      maxItems,
      timeBudgetMs,
      maxSnapshotAgeMs,
      allowPartial: values['allow-partial'] === true,
      lastUsed: lastUsed!,
      keep,
      accounts,
      role,
      accountConcurrency,
      shard,
      snapshotId,
      maxAttempts,
      quiet: values.quiet === true,
      logLevel: logLevel!,
      debug: values.debug === true,
      s3: { endpointUrl: s3EndpointUrl, forcePathStyle: values['s3-force-path-style'] === true, sse, kmsKeyId },
      tuning,
    },
  };
}

/** The start time a snapshot id names (YYYYMMDDTHHMMSSZ, UTC). */
export function snapshotTimeOf(id: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(id);
  if (!m) return new Date(Number.NaN);
  const time = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  return time.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z') === id ? time : new Date(Number.NaN);
}

function httpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** The known flag nearest to a mistyped one (edit distance at most 2), if any. */
function closestOption(name: string): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const known of Object.keys(OPTIONS)) {
    const d = editDistance(name, known);
    if (d <= 2 && (!best || d < best.d)) best = { name: known, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The longest duration a flag takes: 7 days. Node's timers hold at most 2^31-1 ms
 * (24.8 days; beyond, they fire at once), and no batch window is longer than a week.
 */
export const MAX_DURATION_MS = 7 * 86_400_000;

/** `90s`, `14m`, `1h`, `1h30m`, `500ms`, `2d` → milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * unit[m[2]!]!;
    matched = re.lastIndex;
  }
  return matched === text.length && text.length > 0 ? Math.round(total) : undefined;
}

export const HELP = `iam-key-export — snapshot every IAM access key into CSV or Parquet files a warehouse loads as they are.

Usage: iam-key-export [options]
       iam-key-export ddl --dialect duckdb|postgres|athena|bigquery|snowflake [--location URI] [--format F] [--table T]

Output
  --format csv|parquet        output format (default parquet)
  --out DIR                   dataset root (default ./export); snapshots land in
                              DIR/access_keys/snapshot_id=<YYYYMMDDTHHMMSSZ>/
  --out s3://BUCKET/PREFIX    dataset root in S3: snapshots, checkpoint and lease all in
                              the bucket, so a rerun on any machine resumes
S3 output (only with --out s3://...)
  --s3-endpoint-url URL       S3 endpoint (default: the SDK's, or AWS_ENDPOINT_URL_S3)
  --s3-force-path-style       path-style addressing (automatic with a custom S3 endpoint)
  --sse AES256|aws:kms        server-side encryption of every object written
                              (default: the bucket's default encryption)
  --sse-kms-key-id K          KMS key id, ARN or alias for --sse aws:kms (default: aws/s3)
Source
  --path-prefix P             only users whose path starts with P (ListUsers PathPrefix, default /)
  --status S                  keep only keys in status S: Active, Inactive or Expired
                              (repeatable, or comma-separated; default all)
  --endpoint-url URL          IAM endpoint (default: the SDK's, or AWS_ENDPOINT_URL_IAM)
  --region R                  region for signing, IAM's and S3's (IAM is global; default from the
                              SDK's chain, else us-east-1; S3 follows a bucket's own region)
  --profile P                 AWS profile for credentials, IAM's and S3's (default: the SDK's chain, AWS_PROFILE)
  --max-attempts N            attempts per API call, adaptive retry mode, 1..100 (default 10)
Speed
  --concurrency N             IAM requests out at once per account (users' keys, listing, facts,
                              report), 1..64 (default 8)
  --page-size N               PageSize for ListUsers and ListAccessKeys, 1..1000 (default 100)
Runs and resume
  --fresh                     discard an unfinished snapshot in --out instead of resuming it
  --max-items N               stop cleanly after N keys (exit 75); rerun to continue
  --time-budget DUR           stop cleanly after DUR, e.g. 90s, 14m, 1h (at most 7d; exit 75); rerun to continue
  --max-snapshot-age DUR      an unfinished snapshot older than DUR is discarded and a new one
                              started, with a warning (default 24h, at most 7d)
  --allow-partial             publish even if some users failed (they are listed in the manifest)
Last use
  --last-used MODE            report (default): the IAM credential report, GetAccessKeyLastUsed
                              for keys it cannot attribute; api: GetAccessKeyLastUsed per key;
                              off: last-use columns stay null
Many accounts
  --organization              every ACTIVE account of the organization (Organizations ListAccounts;
                              run from the management or a delegated administrator account)
  --accounts LIST|@FILE       these accounts (12-digit ids, comma-separated, or one per line in FILE)
  --exclude-accounts LIST     leave these out (with --organization or --accounts)
  --role-name R               the role assumed in every member account (required with either)
  --external-id X             ExternalId of that role's trust policy
  --role-session-name S       session name (default iam-key-export)
  --account-concurrency N     accounts read at once, 1..64 (default 4); --concurrency requests each
                              The credentials' own account is read with them, not through the role.
Shards (one snapshot, N processes of a scheduler; no coordinator)
  --shards N                  this run exports the accounts of one shard (a stable hash of the id)
  --shard-index I             which one (default JOB_COMPLETION_INDEX, then AWS_BATCH_JOB_ARRAY_INDEX)
  --snapshot-id ID            the snapshot every shard works on (YYYYMMDDTHHMMSSZ; required with --shards)
  iam-key-export finalize --out X --snapshot-id ID --shards N
                              publish a sharded snapshot whose shards are all done (the last shard to
                              finish does it by itself; this is for DAG schedulers)
Retention
  --keep N                    after publishing, delete all but the newest N published snapshots
                              (default: keep all; staging and unfinished snapshots are never touched)
Operator output
  --quiet                     no progress output, only errors and the final summary
  --log-level L               trace, debug, info, warn, error, fatal or silent (default info)
  --debug                     show stack traces with errors
  --help, --version

Rerunning the same command resumes the unfinished snapshot in --out.
Exit codes: 0 published; 1 fatal (credentials, endpoint, denied ListUsers, I/O);
2 usage or configuration error; 3 finished with per-user errors (not published
unless --allow-partial); 75 stopped early, resumable (signal, --max-items, --time-budget,
another run holding the lease of --out).
`;
