/**
 * Waiting in CLI tests on what happened, never on how long it took: a test that
 * must act at a moment of a run (calls in flight, keys read, a new second for a
 * new snapshot id) waits until that state is observed, then acts. No assertion
 * depends on a sleep being long enough.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunningCli } from './cli.ts';

/**
 * Resolves once `ready()` holds, checking again whenever the CLI writes to stdout
 * or stderr; rejects when the CLI exits first.
 */
export function untilOutput(cli: RunningCli, ready: () => boolean, what = 'the awaited output'): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!ready()) return;
      cleanup();
      resolve();
    };
    const exited = () => {
      cleanup();
      if (ready()) resolve();
      else reject(new Error(`the CLI exited before ${what} (code ${cli.child.exitCode}, signal ${cli.child.signalCode})`));
    };
    const cleanup = () => {
      cli.child.stdout?.off('data', check);
      cli.child.stderr?.off('data', check);
      cli.child.off('close', exited);
    };
    cli.child.stdout?.on('data', check);
    cli.child.stderr?.on('data', check);
    cli.child.once('close', exited);
  });
}

/**
 * Resolves once `ready()` holds (state of the in-process fake, of files), checked
 * every few milliseconds; rejects when the CLI exits first.
 */
export async function until(cli: RunningCli, ready: () => boolean, what = 'the awaited state'): Promise<void> {
  while (!ready()) {
    if (cli.child.exitCode !== null || cli.child.signalCode !== null) throw new Error(`the CLI exited before ${what}`);
    await sleep(5);
  }
}

/** Resolves once the clock shows another second than `since` (snapshot ids have second resolution). */
export async function untilNextSecond(since: Date | number): Promise<void> {
  const second = Math.floor(new Date(since).getTime() / 1000);
  while (Math.floor(Date.now() / 1000) <= second) await sleep(Math.max(1, 1000 - (Date.now() % 1000)));
}
