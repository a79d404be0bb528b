/**
 * The command line: parse, run, report, exit with the documented code.
 * Exit codes: 0 published; 1 fatal; 2 usage/configuration; 3 per-user errors;
 * 75 stopped early and resumable.
 */
import { readFileSync } from 'node:fs';
import { HELP, parseCommand } from './config.ts';
import { describeError, EXIT, exitCodeOf } from './errors.ts';
import { runExport, type RunOutcome } from './run.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Runs the CLI with `argv` (no node/script); resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const debug = argv.includes('--debug');
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

  // First SIGTERM/SIGINT: stop gracefully (commit, checkpoint, exit 75).
  // A second one exits at once; the last checkpoint still holds.
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      process.stderr.write(`iam-key-export: ${sig}: stopping after committing what is read; rerun to resume\n`);
      stop.abort('signal');
    } else {
      process.stderr.write(`iam-key-export: ${sig} again: exiting now; the last checkpoint holds, rerun to resume\n`);
      process.exit(EXIT.STOPPED);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    const outcome = await runExport(config, { stop: stop.signal, toolVersion: VERSION });
    process.stderr.write(summaryLine(outcome) + '\n');
    return exitCodeFor(outcome);
  } catch (err) {
    process.stderr.write(`iam-key-export: ${describeError(err, config.debug)}\n`);
    return exitCodeOf(err);
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
  }
}

/** The final one-line summary. */
export function summaryLine(outcome: RunOutcome): string {
  const s = outcome.summary;
  const counts = `rows=${s.rows} users=${s.usersExported + s.usersVanished + s.usersFailed} vanished=${s.usersVanished} failed=${s.usersFailed} calls=${s.calls} throttles=${s.throttles} retries=${s.retries} wall=${(s.wallMs / 1000).toFixed(1)}s resumes=${s.resumes}`;
  switch (outcome.status) {
    case 'published':
      return `iam-key-export: published snapshot ${outcome.snapshotId}${outcome.result ? ` to ${outcome.result.dir}` : ''}: ${counts}`;
    case 'stopped':
      return `iam-key-export: stopped (${outcome.reason}), snapshot ${outcome.snapshotId} is resumable: rerun the same command; ${counts}`;
    case 'user-errors':
      return `iam-key-export: ${outcome.failed.length} user(s) failed (${[...new Set(outcome.failed.map((f) => f.code))].join(', ')}); snapshot ${outcome.snapshotId} not published: rerun to retry them, or add --allow-partial; ${counts}`;
  }
}
