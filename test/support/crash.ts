/**
 * Kill-and-rerun loops: run the CLI, kill its whole process group at seeded random
 * moments (and right inside finalize), rerun until it exits 0, and hand back the
 * published rows for comparison with an uninterrupted run.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { mulberry32 } from '../fake-iam/random.ts';
import { startCli, testEnv, type CliResult } from './cli.ts';


/** True while a run is writing publish-<run>/ files newer than `since` (a killed run's leftovers are older). */
function publishing(out: string, since: number): boolean {
  const staging = join(out, '_staging');
  if (!existsSync(staging)) return false;
  return readdirSync(staging).some((id) => {
    let folders: string[];
    try {
      folders = readdirSync(join(staging, id)).filter((f) => f.startsWith('publish-'));
    } catch {
      return false;
    }
    return folders.some((folder) => {
      const dir = join(staging, id, folder);
      try {
        return readdirSync(dir).some((f) => statSync(join(dir, f)).mtimeMs >= since);
      } catch {
        return false;
      }
    });
  });
}

/**
 * True once the snapshot staged in `out` committed something: only then is it a
 * snapshot a rerun resumes (a run killed before its first commit leaves nothing
 * the next run adopts, by design).
 */
function adopted(out: string): boolean {
  const staging = join(out, '_staging');
  if (!existsSync(staging)) return false;
  return readdirSync(staging).some((id) => {
    try {
      return (JSON.parse(readFileSync(join(staging, id, 'checkpoint.json'), 'utf8')) as { commits?: number }).commits! > 0;
    } catch {
      return false;
    }
  });
}

/** How the loop looks into a store that is not a local folder (an S3 bucket). */
export interface StoreProbe {
  /** True once the staged snapshot committed something (see `adopted`). */
  adopted(): Promise<boolean>;
  /** Called as a run starts; then `publishing()` is true once that run writes its publish folder. */
  runStarted(): Promise<void>;
  publishing(): Promise<boolean>;
}

/** Where one run happens: its environment additions and working directory (a fresh machine per run). */
export interface RunPlace {
  readonly env: Record<string, string>;
  readonly cwd: string;
}

export interface KillLoopOptions {
  readonly args: readonly string[];
  readonly out: string;
  /** For a store that is not the local folder `out`. */
  readonly probe?: StoreProbe;
  /** Called before every run (the last one too): a fresh working directory, HOME, TMPDIR... */
  readonly place?: () => Promise<RunPlace>;
  /** Kills at random moments of the export. */
  readonly kills: number;
  /** Then kills aimed inside finalize (while publish/ exists in staging). */
  readonly finalizeKills: number;
  readonly seed: number;
  readonly signal: NodeJS.Signals;
  /** Random kill moments are drawn from [minMs, maxMs] after the run logged its start and its snapshot committed something. */
  readonly minMs: number;
  readonly maxMs: number;
  readonly env?: Record<string, string>;
  /** Called after each kill, before the next run (e.g. to change IAM meanwhile). */
  readonly afterKill?: (kill: number) => Promise<void> | void;
  /** Called after the last kill, before the final rerun (e.g. runs killed at exact fault points). */
  readonly beforeLast?: () => Promise<void>;
}

export interface KillLoopResult {
  /** Runs that were killed (the signal reached a live process). */
  readonly killed: number;
  /** Kills that landed while publish/ existed in staging. */
  readonly killedInFinalize: number;
  /** Every result, the last one being the run that exited 0. */
  readonly results: readonly CliResult[];
}

/**
 * Runs `args` repeatedly, killing `kills` runs, then runs it to completion.
 * Throws when a run exits with anything but 0 / 75 / the kill.
 */
export async function killLoop(o: KillLoopOptions): Promise<KillLoopResult> {
  const random = mulberry32(o.seed);
  const results: CliResult[] = [];
  let killed = 0;
  let killedInFinalize = 0;
  const total = o.kills + o.finalizeKills;
  for (let attempt = 0; killed < total; attempt++) {
    if (attempt > total * 4) throw new Error(`only ${killed} of ${total} kills landed in ${attempt} runs`);
    const startedAt = Date.now();
    const place = await o.place?.();
    await o.probe?.runStarted();
    const cli = startCli(o.args, testEnv({ ...o.env, ...place?.env }), place?.cwd);
    const isAdopted = () => (o.probe ? o.probe.adopted() : Promise.resolve(adopted(o.out)));
    const isPublishing = () => (o.probe ? o.probe.publishing() : Promise.resolve(publishing(o.out, startedAt)));
    const aimAtFinalize = killed >= o.kills;
    const delay = o.minMs + random() * (o.maxMs - o.minMs);
    let deadline = Number.POSITIVE_INFINITY;
    let exited = false;
    void cli.done.then(() => (exited = true));
    let inFinalize = false;
    for (;;) {
      if (exited) break;
      // Time from the start line (startup is slower on a loaded machine) of a
      // snapshot that has committed something (else the kill only costs a new start).
      if (deadline === Number.POSITIVE_INFINITY && cli.stdout().includes('"event":"start"') && (await isAdopted())) deadline = Date.now() + delay;
      if (aimAtFinalize ? await isPublishing() : Date.now() >= deadline) {
        inFinalize = await isPublishing();
        if (aimAtFinalize) await sleep(Math.floor(random() * 3));
        cli.kill(o.signal);
        break;
      }
      await sleep(aimAtFinalize ? 1 : 5);
    }
    const r = await cli.done;
    results.push(r);
    if (r.signal === o.signal || (o.signal === 'SIGTERM' && r.code === 75)) {
      killed++;
      if (inFinalize) killedInFinalize++;
      await o.afterKill?.(killed);
      continue;
    }
    if (r.code === 0) {
      // The snapshot finished before the kill: the caller sizes the workload so each
      // run does a small share of it, and finalize long enough to be hit.
      throw new Error(`run ${attempt} finished before its kill (${killed} kills so far); make the workload slower`);
    }
    if (r.code !== 75) throw new Error(`run exited ${r.code} / ${r.signal}: ${r.stderr}`);
  }
  await o.beforeLast?.();
  const place = await o.place?.();
  const last = await startCli(o.args, testEnv({ ...o.env, ...place?.env }), place?.cwd).done;
  results.push(last);
  if (last.code !== 0) throw new Error(`the final rerun exited ${last.code}: ${last.stderr}`);
  return { killed, killedInFinalize, results };
}
