/**
 * `make demo`: starts the bundled fake IAM (300 users), runs real exports into
 * ./export/parquet and ./export/csv with the real CLI (one dataset root per format,
 * as a warehouse table has one format), and shows where each snapshot is and its
 * first rows, read back with DuckDB as a warehouse would.
 */
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { startFakeIam } from './fake-iam/server.ts';
import { runCli, testEnv } from './support/cli.ts';
import { queryDuckDb } from './support/duckdb.ts';

const root = resolve('export');
const fake = await startFakeIam({ users: 300, seed: 2026, keysPerUser: { min: 0, max: 2 } });
let failed = false;
try {
  console.log(`fake IAM listening on ${fake.url} with ${fake.truth().users.length} users and ${fake.truth().keys.length} keys\n`);
  for (const format of ['parquet', 'csv'] as const) {
    const out = join(root, format);
    const before = new Set(await readdir(join(out, 'access_keys')).catch(() => [] as string[]));
    const args = ['--endpoint-url', fake.url, '--out', out, '--format', format, '--quiet'];
    console.log(`$ iam-key-export ${args.join(' ')}`);
    const r = await runCli(args, testEnv());
    process.stdout.write(r.stderr);
    if (r.code !== 0) {
      failed = true;
      console.log(`exit code ${r.code}`);
      continue;
    }
    const created = (await readdir(join(out, 'access_keys'))).filter((d) => !before.has(d)).sort();
    const dir = join(out, 'access_keys', created[created.length - 1]!);
    const files = (await readdir(dir)).sort();
    console.log(`snapshot: ${dir}\n  files: ${files.join(', ')}`);
    const data = join(dir, `part-00000.${format}`).replaceAll("'", "''");
    const scan = format === 'parquet' ? `read_parquet('${data}')` : `read_csv('${data}', header = true)`;
    const count = await queryDuckDb(`select count(*) as n from ${scan}`);
    const first = await queryDuckDb(`select user_name, access_key_id, status, create_date, key_age_days from ${scan} limit 5`);
    console.log(`  ${String(count.rows[0]!.n)} rows; first 5, read back with DuckDB:`);
    console.table(first.rows);
    console.log();
  }
} finally {
  await fake.close();
}
console.log(failed ? 'demo failed' : `done: snapshots are under ${root}/<format>/access_keys/ (one folder per snapshot, Hive-partitioned by snapshot_id)`);
process.exitCode = failed ? 1 : 0;
