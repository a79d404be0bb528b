/**
 * `make bench`: speed, rate use, memory and checkpoint cost of iam-key-export, in
 * a few minutes. Prints the machine and a table (measure | value | target | met? |
 * runs) and writes the same numbers to bench/results.json and bench/results.md.
 * It asserts nothing: a missed target is reported, not failed.
 *
 * Every exporter run, worker and fake IAM is a child process (bench/proc.ts):
 * the fake's CPU stays off the exporter's thread, each peak RSS is one process's,
 * and all of them are killed on any exit. Every exporter run is the installed
 * command: this checkout packed (`npm pack`) and installed (`npm install -g`) into
 * the scratch directory first, as an operator runs it.
 *
 *   node --import tsx bench/run.ts [scenario...]   only those scenarios (e.g. start
 *                                                   fanout); the table is printed,
 *                                                   bench/results.* are left as they are
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMachine } from './machine.ts';
import { killAll, onInterrupt } from './proc.ts';
import { machineLine, renderText, seconds, writeResults, type Row, type ScenarioContext, type ScenarioResult } from './results.ts';
import { accountsScenario } from './scenarios/accounts.ts';
import { fanoutScenario } from './scenarios/fanout.ts';
import { lastUsedScenario } from './scenarios/lastused.ts';
import { localScenario } from './scenarios/local.ts';
import { memoryScenario } from './scenarios/memory.ts';
import { rateLimitScenario } from './scenarios/ratelimit.ts';
import { s3Scenario } from './scenarios/s3.ts';
import { startScenario } from './scenarios/start.ts';
import { packAndInstall } from '../test/support/package.ts';

const SCENARIOS: readonly { readonly name: string; readonly section: string; readonly run: (ctx: ScenarioContext) => Promise<ScenarioResult> }[] = [
  { name: 'start', section: '7', run: startScenario },
  { name: 'fanout', section: '1-2', run: fanoutScenario },
  { name: 'rateLimit', section: '3', run: rateLimitScenario },
  { name: 'memory', section: '5', run: memoryScenario },
  { name: 'local', section: '4-6', run: localScenario },
  { name: 's3', section: '8', run: s3Scenario },
  { name: 'lastUsed', section: '10', run: lastUsedScenario },
  { name: 'accounts', section: '9', run: accountsScenario },
];

const only = process.argv.slice(2);
const unknown = only.filter((name) => !SCENARIOS.some((s) => s.name === name));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
  process.exit(2);
}
const selected = only.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => only.includes(s.name));

const started = performance.now();
const machine = describeMachine();
const log = (message: string) => process.stderr.write(`bench [${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${message}\n`);
log(machineLine(machine));

const workDir = await mkdtemp(join(tmpdir(), 'ike-bench-'));
const forgetWorkDir = onInterrupt(() => rmSync(workDir, { recursive: true, force: true }));
const rows: Row[] = [];
const data: Record<string, unknown> = {};
let failed = false;
try {
  log('packing and installing this checkout (npm pack, npm install -g)');
  const installed = await packAndInstall(workDir);
  log(`  npm pack ${seconds(installed.packMs)}, npm install -g ${seconds(installed.installMs)}: ${installed.command}`);
  data.install = { packMs: installed.packMs, installMs: installed.installMs };
  for (const s of selected) {
    try {
      const result = await s.run({ workDir, command: installed.command, log });
      rows.push(...result.rows);
      data[s.name] = result.data;
    } catch (err) {
      // One broken scenario must not hide the others' numbers.
      failed = true;
      const message = err instanceof Error ? err.message : String(err);
      log(`${s.name} FAILED: ${message}`);
      rows.push({ section: s.section, measure: `${s.name}: scenario failed`, value: message.split('\n')[0]!, target: 'runs', met: false, runs: '—' });
      data[s.name] = { error: message };
    }
  }
} finally {
  killAll();
  await rm(workDir, { recursive: true, force: true });
  forgetWorkDir();
}

const totalSeconds = (performance.now() - started) / 1000;
const results = { machine, totalSeconds, rows, scenarios: data };
// A partial run must not replace the full table the README quotes.
const written = selected === SCENARIOS ? await writeResults(results) : undefined;
process.stdout.write(
  `\niam-key-export benchmark — ${machineLine(machine)}\n\n${renderText(rows)}\n\ntotal ${totalSeconds.toFixed(0)} s; ${written ? `written to ${written.json} and ${written.md}` : `only ${only.join(', ')}: results files not written`}\n`,
);
process.exitCode = failed ? 1 : 0;
