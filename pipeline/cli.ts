/**
 * The command line: parse, run, report, exit with the documented code.
 * Exit codes: 0 published; 1 fatal; 2 usage/configuration; 3 per-user errors;
 * 75 stopped early and resumable.
 */
import { readFileSync } from 'node:fs';
import { HELP, parseCommand } from './config.ts';
import { describeError, EXIT, exitCodeOf } from './errors.ts';
import type { RunOutcome } from './run.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** How long a graceful stop may take after a signal before the process exits anyway. */
const STOP_DEADLINE_MS = 8_000;

/** Runs the CLI with `argv` (no node/script); resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const debug = argv.includes('--debug');
  if (argv[0] === 'ddl') return ddl(argv.slice(1), debug);
  let command;
  try {
    command = parseCommand(argv);
  } catch (err) {
    process.stderr.write(`iam-key-export: ${describeError(err, debug).split('\n').join('\niam-key-export: ')}\n`);
    return exitCodeOf(err);
  }
  if (command.kind === 'help') {
    process.stdout.write(HELP);
    return EXIT.PUBLISHED;
  }
  if (command.kind === 'version') {
    process.stdout.write(`iam-key-export ${VERSION}\n`);
    return EXIT.PUBLISHED;
  }
  const config = command.config;
  // Loaded only now: run.ts and report.ts pull in the AWS SDK, parquetjs and pino,
  // which take most of a start; --help, --version and usage errors never need them.
  const [{ createReporter }, { runExport, runFinalize }] = await Promise.all([import('./report.ts'), import('./run.ts')]);

  // First SIGTERM/SIGINT: stop gracefully (commit, checkpoint, exit 75).
  // A second one exits at once; the last checkpoint still holds.
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      process.stderr.write(`iam-key-export: ${sig}: stopping after committing what is read; rerun to resume\n`);
      stop.abort('signal');
      // A net under the graceful stop: whatever phase hangs, the process ends in
      // time (a scheduler's grace period is often 10 s). The last checkpoint holds.
      setTimeout(() => {
        process.stderr.write(`iam-key-export: ${sig}: the graceful stop took too long; exiting now: the last checkpoint holds, rerun to resume\n`);
        process.exit(EXIT.STOPPED);
      }, STOP_DEADLINE_MS).unref();
    } else {
      process.stderr.write(`iam-key-export: ${sig} again: exiting now; the last checkpoint holds, rerun to resume\n`);
      process.exit(EXIT.STOPPED);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const progressMs = Number(process.env.IKE_PROGRESS_MS) > 0 ? Number(process.env.IKE_PROGRESS_MS) : undefined;
  const reporter = createReporter(config, { stdout: process.stdout, stderr: process.stderr, ...(progressMs ? { progressMs } : {}) });
  try {
    const hooks = { stop: stop.signal, toolVersion: VERSION, observer: reporter.observer };
    const outcome = command.kind === 'finalize' ? await runFinalize(config, hooks) : await runExport(config, hooks);
    const exitCode = exitCodeFor(outcome);
    reporter.end({ outcome, exitCode });
    return exitCode;
  } catch (err) {
    const exitCode = exitCodeOf(err);
    reporter.end({ error: err, exitCode });
    return exitCode;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

function exitCodeFor(outcome: RunOutcome): number {
  switch (outcome.status) {
    case 'published':
      return EXIT.PUBLISHED;
    case 'stopped':
      return EXIT.STOPPED;
    case 'user-errors':
      return EXIT.USER_ERRORS;
    case 'shard-done':
      return EXIT.PUBLISHED;
    case 'waiting':
      return EXIT.STOPPED;
  }
}

/** `iam-key-export ddl ...`: prints the DDL of a dialect for the dataset (no AWS involved). */
async function ddl(argv: readonly string[], debug: boolean): Promise<number> {
  const { DDL_HELP, parseDdlCommand, renderDdl } = await import('./ddl/index.ts');
  try {
    const command = parseDdlCommand(argv);
    process.stdout.write(command.kind === 'help' ? DDL_HELP : renderDdl(command.options));
    return EXIT.PUBLISHED;
  } catch (err) {
    process.stderr.write(`iam-key-export ddl: ${describeError(err, debug).split('\n').join('\niam-key-export ddl: ')}\n`);
    return exitCodeOf(err);
  }
}
