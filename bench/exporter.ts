/**
 * One run of the installed command (the packed tarball, `npm install -g`: compiled
 * JavaScript, see test/support/package.ts) as a child process, against a fake,
 * into a fresh --out: what an operator runs. Reports the exporter's own wall
 * time (the manifest's wall_time_ms: from the start of the run to the publish,
 * Node startup excluded), the process wall time, peak RSS and the API counters.
 */
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withThisNode } from '../test/support/package.ts';
import { expectSuccess, runCommand } from './proc.ts';

/** The part of _manifest.json the bench reads. */
interface Manifest {
  readonly rows: number;
  readonly files: readonly { readonly file: string; readonly rows: number }[];
  readonly api: { readonly calls: Record<string, number>; readonly calls_total: number; readonly attempts: number; readonly retries: number; readonly throttles: number };
  readonly wall_time_ms: number;
}

export interface ExportOptions {
  /** The installed command, `<prefix>/bin/iam-key-export` (ScenarioContext.command). */
  readonly command: string;
  readonly url: string;
  readonly concurrency: number;
  readonly format: 'csv' | 'parquet';
  /** Parent directory of the run's --out (a fresh directory is made in it). */
  readonly workDir: string;
  /** Extra environment, e.g. IKE_COMMIT_MS. */
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

export interface ExportRun {
  /** The manifest's wall_time_ms. */
  readonly wallMs: number;
  /** Spawn to exit of the installed command (Node startup and module loading included). */
  readonly processMs: number;
  readonly maxRssKb: number | null;
  readonly cpuMs: number | null;
  readonly rows: number;
  readonly calls: Readonly<Record<string, number>>;
  readonly callsTotal: number;
  readonly retries: number;
  readonly throttles: number;
  /** The published data files, absolute paths. */
  readonly dataFiles: readonly string[];
}

/**
 * The environment of an exporter run: dummy credentials and a region, nothing
 * from the developer's AWS setup or tuning.
 */
export function exporterEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && !k.startsWith('IKE_') && k !== 'NODE_OPTIONS') env[k] = v;
  return {
    ...env,
    AWS_ACCESS_KEY_ID: 'AKIDBENCHBENCHBENCH0',
    AWS_SECRET_ACCESS_KEY: 'bench-secret-not-real',
    AWS_REGION: 'us-east-1',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_EC2_METADATA_DISABLED: 'true',
    ...extra,
  };
}

/** Runs the CLI once to a published snapshot; throws unless it exits 0. */
export async function runExporter(o: ExportOptions): Promise<ExportRun> {
  const out = await mkdtemp(join(o.workDir, 'export-'));
  const args = ['--endpoint-url', o.url, '--out', out, '--format', o.format, '--concurrency', String(o.concurrency), '--quiet', '--fresh'];
  const r = expectSuccess('iam-key-export', await runCommand(o.command, args, withThisNode(exporterEnv(o.env)), o.timeoutMs ?? 300_000));
  const dataset = join(out, 'access_keys');
  // access_keys/ also holds _LATEST (a file naming the newest snapshot) beside the snapshot folders.
  const [snapshot] = (await readdir(dataset)).filter((name) => name.startsWith('snapshot_id='));
  if (!snapshot) throw new Error(`iam-key-export published nothing under ${dataset}`);
  const dir = join(dataset, snapshot);
  const m = JSON.parse(await readFile(join(dir, '_manifest.json'), 'utf8')) as Manifest;
  return {
    wallMs: m.wall_time_ms,
    processMs: r.processMs,
    maxRssKb: r.maxRssKb,
    cpuMs: r.cpuMs,
    rows: m.rows,
    calls: m.api.calls,
    callsTotal: m.api.calls_total,
    retries: m.api.retries,
    throttles: m.api.throttles,
    dataFiles: m.files.map((f) => join(dir, f.file)),
  };
}
