/**
 * Prints the mutation score of every module from Stryker's JSON report (make
 * mutate, after the run): killed, timed out, survived, without coverage, and the
 * score as Stryker counts it, (killed + timeout) / (killed + timeout + survived +
 * no coverage); mutants that do not compile are not counted. A module under the
 * target is marked. Usage: node --import tsx test/support/mutation-score.ts [report.json] [target %]
 */
import { readFileSync } from 'node:fs';

interface Report {
  readonly files: Record<string, { readonly mutants: readonly { readonly status: string }[] }>;
}

const file = process.argv[2] ?? 'reports/mutation/mutation.json';
const target = Number(process.argv[3] ?? 85);
const report = JSON.parse(readFileSync(file, 'utf8')) as Report;

const rows = Object.entries(report.files)
  .sort(([a], [b]) => (a < b ? -1 : 1))
  .map(([name, f]) => {
    const count = (status: string) => f.mutants.filter((m) => m.status === status).length;
    const killed = count('Killed');
    const timeout = count('Timeout');
    const survived = count('Survived');
    const noCoverage = count('NoCoverage');
    const compileErrors = count('CompileError');
    const detected = killed + timeout;
    const valid = detected + survived + noCoverage;
    const score = valid === 0 ? 100 : (100 * detected) / valid;
    return { name, killed, timeout, survived, noCoverage, compileErrors, score };
  });

const header = ['module', 'score', 'killed', 'timeout', 'survived', 'no cov', 'not compiling', ''];
const lines = rows.map((r) => [r.name, `${r.score.toFixed(2)} %`, r.killed, r.timeout, r.survived, r.noCoverage, r.compileErrors, r.score < target ? `below ${target} %` : ''].map(String));
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
const show = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
console.log(`\nMutation score per module (target ${target} %), from ${file}:`);
console.log(show(header));
for (const l of lines) console.log(show(l));
