/**
 * Prints the mutation score of every module from Stryker's JSON reports (make
 * mutate, after the run): killed, timed out, survived, without coverage, and the
 * score as Stryker counts it, (killed + timeout) / (killed + timeout + survived +
 * no coverage); mutants that do not compile are not counted. A module under the
 * target is marked. Usage: node --import tsx test/support/mutation-score.ts [--target 85] report.json...
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Report {
  readonly files: Record<string, { readonly mutants: readonly { readonly status: string }[] }>;
}

/** The score table of `files` (Stryker JSON reports), one line per module. */
export function scoreTable(files: readonly string[], target: number): string {
  const rows = files
    .flatMap((file) => Object.entries((JSON.parse(readFileSync(file, 'utf8')) as Report).files))
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
  return [`Mutation score per module (target ${target} %):`, show(header), ...lines.map(show)].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--target');
  const target = at >= 0 ? Number(args.splice(at, 2)[1]) : 85;
  console.log(`\n${scoreTable(args.length > 0 ? args : ['reports/mutation/mutation.json'], target)}`);
}
