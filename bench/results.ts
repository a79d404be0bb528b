/**
 * The bench's output: rows of measure | value | target | met? | runs, printed as
 * a text table, written as JSON (bench/results.json, with every raw number) and
 * as a markdown table (bench/results.md).
 */
import { writeFile } from 'node:fs/promises';
import type { Machine } from './machine.ts';

/** One line of the table. */
export interface Row {
  /** Which measure of the brief it belongs to, e.g. "1 fan-out". */
  readonly section: string;
  readonly measure: string;
  readonly value: string;
  /** The target, or "—" when the measure has none. */
  readonly target: string;
  /** null when there is no target. */
  readonly met: boolean | null;
  /** How many runs the value summarizes, e.g. "median of 3". */
  readonly runs: string;
}

/** What a scenario returns: its rows and its raw numbers. */
export interface ScenarioResult {
  readonly rows: readonly Row[];
  readonly data: unknown;
}

/** Everything one bench run measured. */
export interface Results {
  readonly machine: Machine;
  readonly totalSeconds: number;
  readonly rows: readonly Row[];
  readonly scenarios: Readonly<Record<string, unknown>>;
}

/** The median (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** "median of 3", "1 run". */
export function runsLabel(n: number): string {
  return n === 1 ? '1 run' : `median of ${n}`;
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
export const mib = (kb: number | null): string => (kb === null ? 'n/a' : `${(kb / 1024).toFixed(0)} MiB`);
export const perSecond = (rows: number, ms: number): string => `${Math.round(rows / (ms / 1000)).toLocaleString('en-US')} rec/s`;

function metLabel(met: boolean | null): string {
  return met === null ? '—' : met ? 'yes' : 'NO';
}

const HEADER = ['#', 'measure', 'value', 'target', 'met?', 'runs'] as const;

function cells(r: Row): string[] {
  return [r.section, r.measure, r.value, r.target, metLabel(r.met), r.runs];
}

/** The rows as an aligned plain-text table. */
export function renderText(rows: readonly Row[]): string {
  const table = [HEADER as readonly string[], ...rows.map(cells)];
  const widths = HEADER.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const line = (r: readonly string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ').trimEnd();
  return [line(table[0]!), widths.map((w) => '-'.repeat(w)).join('-|-'), ...table.slice(1).map(line)].join('\n');
}

/** The machine in one line. */
export function machineLine(m: Machine): string {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, Node ${m.node}, ${m.platform}, ${m.date} (load average at start ${m.loadAtStart})`;
}

/** The rows as a markdown table under the machine line. */
export function renderMarkdown(results: Results): string {
  const esc = (c: string) => c.replaceAll('|', '\\|');
  const lines = [
    `Machine: ${machineLine(results.machine)}. Total bench time ${results.totalSeconds.toFixed(0)} s.`,
    '',
    `| ${HEADER.join(' | ')} |`,
    `| ${HEADER.map(() => '---').join(' | ')} |`,
    ...results.rows.map((r) => `| ${cells(r).map(esc).join(' | ')} |`),
  ];
  return lines.join('\n') + '\n';
}

/** Writes results.json and results.md next to this file. */
export async function writeResults(results: Results): Promise<{ json: string; md: string }> {
  const json = new URL('./results.json', import.meta.url);
  const md = new URL('./results.md', import.meta.url);
  await writeFile(json, JSON.stringify(results, null, 2) + '\n');
  await writeFile(md, renderMarkdown(results));
  return { json: json.pathname, md: md.pathname };
}

/** What run.ts hands every scenario. */
export interface ScenarioContext {
  /** A scratch directory, removed when the bench ends. */
  readonly workDir: string;
  /** The installed command (`npm pack`, `npm install -g` into workDir): what every exporter run starts. */
  readonly command: string;
  /** Progress on stderr. */
  log(message: string): void;
}
