/**
 * `make mutate`: StrykerJS over the core modules of stryker.config.mjs, one module
 * after another, each against its own unit test files (MUTATE_MODULE), then one
 * table of the scores with each module's run time. Modules to run: the arguments
 * (e.g. pipeline/lease.ts), else every module of the table.
 * Usage: node --import tsx test/support/mutate.ts [--target 85] [module...] [-- stryker flags]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { scoreTable } from './mutation-score.ts';

const args = process.argv.slice(2);
const dash = args.indexOf('--');
const strykerFlags = dash >= 0 ? args.splice(dash).slice(1) : [];
const at = args.indexOf('--target');
const target = at >= 0 ? Number(args.splice(at, 2)[1]) : 85;
const { MODULES } = (await import(new URL('../../stryker.config.mjs', import.meta.url).href)) as { MODULES: Record<string, string[]> };
const all = Object.keys(MODULES);
const unknown = args.filter((m) => !all.includes(m));
if (unknown.length > 0) {
  console.error(`make mutate: not a module of stryker.config.mjs: ${unknown.join(', ')} (modules: ${all.join(', ')})`);
  process.exit(2);
}
const modules = args.length > 0 ? args : all;
const times: string[] = [];
let failed = false;
for (const module of modules) {
  const started = Date.now();
  const r = spawnSync('npx', ['stryker', 'run', 'stryker.config.mjs', ...strykerFlags], { stdio: 'inherit', env: { ...process.env, MUTATE_MODULE: module } });
  const minutes = (Date.now() - started) / 60_000;
  times.push(`${module}: ${minutes.toFixed(1)} min`);
  if (r.status !== 0) {
    console.error(`make mutate: stryker failed on ${module} (exit ${r.status ?? r.signal})`);
    failed = true;
  }
}
const reports = modules.map((m) => `reports/mutation/${m.replace(/^.*\//, '').replace(/\.ts$/, '')}.json`).filter((f) => existsSync(f));
console.log(`\n${scoreTable(reports, target)}\nRun time: ${times.join('; ')}`);
process.exit(failed ? 1 : 0);
