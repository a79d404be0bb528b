/**
 * Re-checks the mutants a `make mutate` report left alive (Survived, NoCoverage)
 * against the tests as they are now, without a whole Stryker run: each mutant is
 * applied to the module in place, the module's unit test files (stryker.config.mjs)
 * run once, and the module is restored. Prints each mutant killed or still alive
 * and the score the report would have with those killed. For the tests written
 * after a run: a mutant killed here is killed; one alive is to review.
 *
 * The module must be unchanged since the report (its text is compared): a mutant
 * of an older text is not the same mutant.
 *
 * Usage: node --import tsx test/support/recheck-mutants.ts reports/mutation/<module>.json
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

interface Position {
  readonly line: number;
  readonly column: number;
}
interface Mutant {
  readonly id: string;
  readonly mutatorName: string;
  readonly replacement?: string;
  readonly status: string;
  readonly location: { readonly start: Position; readonly end: Position };
}
interface Report {
  readonly files: Record<string, { readonly source: string; readonly mutants: readonly Mutant[] }>;
}

const [reportFile] = process.argv.slice(2);
if (!reportFile) {
  console.error('usage: recheck-mutants.ts reports/mutation/<module>.json');
  process.exit(2);
}
const report = JSON.parse(readFileSync(reportFile, 'utf8')) as Report;
const { MODULES } = (await import(new URL('../../stryker.config.mjs', import.meta.url).href)) as { MODULES: Record<string, string[]> };

/** Offset of a report position (lines and columns from 1) in `text`. */
function offsetOf(text: string, p: Position): number {
  let offset = 0;
  for (let line = 1; line < p.line; line++) offset = text.indexOf('\n', offset) + 1;
  return offset + p.column - 1;
}

let exit = 0;
for (const [module, file] of Object.entries(report.files)) {
  const tests = MODULES[module];
  if (!tests) throw new Error(`${module} is not a module of stryker.config.mjs`);
  const original = readFileSync(module, 'utf8');
  if (original !== file.source) {
    console.error(`${module} changed since ${reportFile}: run make mutate again`);
    exit = 2;
    continue;
  }
  const alive = file.mutants.filter((m) => m.status === 'Survived' || m.status === 'NoCoverage');
  const detected = file.mutants.filter((m) => m.status === 'Killed' || m.status === 'Timeout').length;
  const valid = detected + alive.length;
  let killedNow = 0;
  const restore = () => writeFileSync(module, original);
  process.once('SIGINT', () => {
    restore();
    process.exit(130);
  });
  try {
    for (const m of alive) {
      const from = offsetOf(original, m.location.start);
      const to = offsetOf(original, m.location.end);
      writeFileSync(module, original.slice(0, from) + (m.replacement ?? '') + original.slice(to));
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=dot', ...tests], { encoding: 'utf8', timeout: 120_000 });
      const killed = r.status !== 0;
      if (killed) killedNow++;
      const line = original.split('\n')[m.location.start.line - 1]?.trim() ?? '';
      console.log(`${killed ? 'killed' : 'ALIVE '} ${m.id} L${m.location.start.line} ${m.mutatorName}: ${JSON.stringify(original.slice(from, to))} -> ${JSON.stringify(m.replacement ?? '')}   | ${line.slice(0, 120)}`);
    }
  } finally {
    restore();
  }
  const score = (100 * (detected + killedNow)) / valid;
  console.log(`${module}: ${killedNow} of ${alive.length} alive mutants killed now; score ${score.toFixed(1)} % (${detected + killedNow} of ${valid}), was ${((100 * detected) / valid).toFixed(1)} %`);
}
process.exit(exit);
