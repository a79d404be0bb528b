// Test preload (node --import): installs the fault-point hook of pipeline/faultpoint.ts.
// Plain JavaScript on purpose: it needs no loader, so it works with the sources
// (tsx) and with the installed package alike. Inert unless IKE_FAULT_POINT is set.
//
//   IKE_FAULT_POINT=name            SIGKILL this process the first time `name` is reached
//   IKE_FAULT_POINT=name@3          ... the third time
//   IKE_FAULT_POINT=name~text       ... the first time with a detail containing `text`
//   IKE_FAULT_LOG=/path/file        append every point reached (name<TAB>detail) to the file
//   IKE_FAULT_PAUSE=/path/file      instead of the SIGKILL: say "fault point <name> paused" on
//                                   stderr and hold the process there until the file exists
//                                   (a signal sent meanwhile is handled once it goes on)
import { appendFileSync, existsSync } from 'node:fs';

const spec = process.env.IKE_FAULT_POINT;
const log = process.env.IKE_FAULT_LOG;
const pause = process.env.IKE_FAULT_PAUSE;
/** Holds the whole process (event loop included) until `file` exists; at most 60 s. */
function holdUntil(file) {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const end = Date.now() + 60_000;
  while (!existsSync(file) && Date.now() < end) Atomics.wait(cell, 0, 0, 5);
}
if (spec || log) {
  const match = /^([^@~]+)(?:@(\d+))?(?:~(.*))?$/.exec(spec ?? '');
  const want = match?.[1];
  const nth = Number(match?.[2] ?? 1);
  const filter = match?.[3];
  let hits = 0;
  globalThis[Symbol.for('iam-key-export.faultPoint')] = (name, detail) => {
    if (log) appendFileSync(log, `${name}\t${detail ?? ''}\n`);
    if (name !== want || (filter !== undefined && !(detail ?? '').includes(filter))) return;
    hits += 1;
    if (hits !== nth) return;
    if (!pause) process.kill(process.pid, 'SIGKILL');
    process.stderr.write(`fault point ${name} paused\n`);
    holdUntil(pause);
  };
}
