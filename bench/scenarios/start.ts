/**
 * Measure 7: start time, spawn to exit of `--version`, which every scheduled run
 * pays before its first call. The installed command (compiled JavaScript, the SDK
 * not loaded) carries the target; the development checkout's bin, which compiles
 * the TypeScript through tsx at every start, is shown beside it, and Node's own
 * start (`node -e 0`) under it: the part of every start no program can save. Node
 * 20 parses the CA bundle NODE_EXTRA_CA_CERTS names while it starts (Node 24 waits
 * for the first TLS connection); where that is set, Node's start is shown without it too.
 */
import { fileURLToPath } from 'node:url';
import { withThisNode } from '../../test/support/package.ts';
import { exporterEnv } from '../exporter.ts';
import { expectSuccess, runCommand } from '../proc.ts';
import { median, type Row, type ScenarioContext, type ScenarioResult } from '../results.ts';

const RUNS = 11;
const TARGET_MS = 300;
const CHECKOUT_BIN = fileURLToPath(new URL('../../bin/iam-key-export.js', import.meta.url));

async function startTimes(ctx: ScenarioContext, what: string, file: string, args: readonly string[], env = withThisNode(exporterEnv())): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push(expectSuccess(what, await runCommand(file, args, env, 60_000)).processMs);
  ctx.log(`  ${what}: median ${Math.round(median(times))} ms`);
  return times;
}

const label = (times: readonly number[]) => `${Math.round(median(times))} ms (range ${Math.round(Math.min(...times))}–${Math.round(Math.max(...times))} ms)`;

/** Runs measure 7. */
export async function startScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  ctx.log(`start: --version, ${RUNS} runs each`);
  const installed = await startTimes(ctx, 'installed command --version', ctx.command, ['--version']);
  const checkout = await startTimes(ctx, 'checkout bin (tsx) --version', process.execPath, [CHECKOUT_BIN, '--version']);
  const node = await startTimes(ctx, 'node -e 0', process.execPath, ['-e', '0']);
  const { NODE_EXTRA_CA_CERTS: extraCa, ...withoutCa } = withThisNode(exporterEnv());
  const nodeNoCa = extraCa ? await startTimes(ctx, 'node -e 0 without NODE_EXTRA_CA_CERTS', process.execPath, ['-e', '0'], withoutCa) : undefined;
  const rows: Row[] = [
    {
      section: '7',
      measure: 'start: installed tarball command --version, spawn to exit',
      value: label(installed),
      target: `≤ ${TARGET_MS} ms`,
      met: median(installed) <= TARGET_MS,
      runs: `median of ${RUNS}`,
    },
    {
      section: '7',
      measure: 'start: development checkout bin (sources through tsx) --version, spawn to exit',
      value: label(checkout),
      target: '—',
      met: null,
      runs: `median of ${RUNS}`,
    },
    {
      section: '7',
      measure: `start: Node ${process.version} alone (node -e 0), spawn to exit`,
      value: label(node) + (nodeNoCa ? `; without NODE_EXTRA_CA_CERTS (set here) ${label(nodeNoCa)}` : ''),
      target: '—',
      met: null,
      runs: `median of ${RUNS}`,
    },
  ];
  return { rows, data: { installedMs: installed, checkoutMs: checkout, nodeMs: node, nodeWithoutExtraCaMs: nodeNoCa ?? null } };
}
