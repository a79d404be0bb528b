/**
 * The part writer: the end of the export pipeline. It renders each record for its
 * part as it arrives (runs.ts, `StagedLines`) and buffers that, and on each commit
 * (every `commitRows` records, once `commitUsers` users' progress waits, every
 * `commitMs` milliseconds, and at the end) writes the
 * buffer as one durable sorted part, and only then applies the STATE items
 * that arrived with them and saves the checkpoint. That order is the one rule that
 * makes resume exactly-once: a checkpoint never vouches for a record that is not
 * in the store, and a part the checkpoint does not name is an orphan, deleted on resume.
 *
 * Each save is a compare-and-swap of the checkpoint, after checking the lease: a
 * run whose lease was taken over cannot commit (LEASE_LOST), and its part names
 * carry its run id, so they never collide with the new holder's.
 */
import { Writable } from 'node:stream';
import type { Checkpoint, CheckpointFile } from '../checkpoint.ts';
import type { Tuning } from '../config.ts';
import { faultPoint } from '../faultpoint.ts';
import type { Batch, StateEvent } from '../items.ts';
import { runFileName, StagedLines, type CommittedRows } from '../runs.ts';
import type { AccessKeyRecord } from '../schema.ts';
import { STAGE_HIGH_WATER_MARK } from '../stages/transform.ts';
import { keyJoin, type Store } from '../store/store.ts';

/** States that only name accounts: committing them alone does not make a snapshot worth resuming. */
const ANNOUNCEMENTS = new Set<StateEvent['kind']>(['accounts-selected', 'account-started', 'account-facts', 'account-failed']);

export interface PartWriterOptions {
  readonly checkpoint: Checkpoint;
  readonly file: CheckpointFile;
  readonly store: Store;
  /** Store folder of the snapshot's parts. */
  readonly runsDir: string;
  /** This run's id: part names carry it. */
  readonly runId: string;
  /** Throws when this run may no longer commit (its lease is lost). */
  readonly assertHeld: () => void;
  /**
   * Commit after commitRows buffered records or once the STATEs waiting carry commitUsers
   * users (both bound memory), or commitMs after the last commit.
   */
  readonly tuning: Pick<Tuning, 'commitRows' | 'commitUsers' | 'commitMs'>;
  /** Called for every record received (progress). */
  readonly onRecord?: () => void;
  /** A note kept with each record until it is committed (what `onCommitted` counts; the record itself is not kept). */
  readonly noteOf?: (record: AccessKeyRecord) => string | undefined;
  /** Called with the records of each commit (their accounts, key ids and notes) before the checkpoint that vouches for them is saved (counts saved with it). */
  readonly onCommitted?: (records: CommittedRows) => void;
  /**
   * Called just before each checkpoint save (e.g. to copy live counters into it);
   * `last` is the commit at the end of the stream, after which nothing more comes.
   */
  readonly beforeSave?: (checkpoint: Checkpoint, last: boolean) => void;
  /** Called with each STATE once it is applied and durable. */
  readonly onState?: (state: StateEvent) => void;
  /** Called after each durable commit. */
  readonly onCommit?: (commit: { rows: number; states: number }) => void;
}

/** The part writer as an object-mode Writable of batches of RECORD and STATE items. */
export function partWriter(o: PartWriterOptions): Writable {
  const staged = new StagedLines(o.checkpoint.config.format);
  let received = 0;
  let states: StateEvent[] = [];
  /** Users the waiting STATEs carry (usersIn). */
  let waitingUsers = 0;
  // Records before this index are vouched for by a STATE already received. Only
  // they are committed: a record whose STATE has not arrived must not become
  // durable, or a resume would read its page again.
  let covered = 0;
  let lastCommit = Date.now();
  let nextRun = 1;

  const commit = async (last = false) => {
    if (states.length === 0 && !last) return;
    const batch = staged.take(covered);
    const pending = states;
    states = [];
    waitingUsers = 0;
    covered = 0;
    o.assertHeld();
    if (batch.rows > 0) {
      o.checkpoint.addPart(await batch.write(o.store, keyJoin(o.runsDir, runFileName(o.runId, nextRun++))));
      faultPoint('part-durable');
    }
    for (const s of pending) o.checkpoint.apply(s);
    // A commit of data counts; one that only names accounts (selected, reached,
    // failed) does not: a run that read nothing pins nothing for the next one.
    if (batch.rows > 0 || pending.some((s) => !ANNOUNCEMENTS.has(s.kind))) o.checkpoint.commits++;
    o.onCommitted?.(batch);
    o.beforeSave?.(o.checkpoint, last);
    o.assertHeld();
    await o.file.save(o.checkpoint);
    // The phase saved with it: a test can kill the process right after the export's last commit, whichever number it has.
    faultPoint('checkpoint-saved', o.checkpoint.phase);
    lastCommit = Date.now();
    for (const s of pending) o.onState?.(s);
    o.onCommit?.({ rows: batch.rows, states: pending.length });
  };

  return new Writable({
    objectMode: true,
    highWaterMark: STAGE_HIGH_WATER_MARK,
    write(batch: Batch<AccessKeyRecord>, _enc, done) {
      const arrived: AccessKeyRecord[] = [];
      for (const item of batch) {
        if (item.type === 'RECORD') {
          arrived.push(item.record);
          o.onRecord?.();
        } else {
          states.push(item.state);
          waitingUsers += usersIn(item.state);
          covered = staged.size + arrived.length;
        }
      }
      if (arrived.length > 0) {
        try {
          // The snapshot's observation order (a later observation of a key wins at the
          // merge): the rows committed before, then the order records arrive in. A
          // commit takes the rows waiting from the first, so this is the seq the
          // commit would give them.
          const base = o.checkpoint.counters.rowsWritten + staged.size;
          // Checked against the schema here (INTERNAL on a bad value), before anything of it is committed.
          staged.add(
            arrived,
            (j) => base + j,
            received,
            o.noteOf ? arrived.map(o.noteOf) : undefined,
          );
        } catch (err) {
          done(err as Error);
          return;
        }
        received += arrived.length;
      }
      if (staged.size >= o.tuning.commitRows || waitingUsers >= o.tuning.commitUsers || Date.now() - lastCommit >= o.tuning.commitMs) commit().then(() => done(), done);
      else done();
    },
    final(done) {
      // Always save at the end, so the counters of the last stretch are kept too.
      commit(true).then(() => done(), done);
    },
  });
}

/**
 * The users a STATE carries until its commit: each is a few hundred bytes of the heap
 * (names, ids, ARN, dates), and where users have a key or two they, not the records,
 * are most of what waits. An account of 100,000 such users read by the fake IAM with
 * no latency (1,600 users a second) held ~6 MiB of them by the time 5 s brought a commit,
 * which V8's headroom made ~10 MiB of RSS (issue 9).
 */
function usersIn(state: StateEvent): number {
  switch (state.kind) {
    case 'users-page':
    case 'users-scanned':
      return state.users.length;
    case 'accounts-selected':
    case 'account-started':
    case 'account-facts':
    case 'account-done':
    case 'account-failed':
    case 'users-restarted':
      return 0;
    default:
      return 1;
  }
}
