import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { ExportError } from '../pipeline/errors.ts';
import { tempPathFor } from '../pipeline/fsutil.ts';
import { selfStamp } from '../pipeline/liveness.ts';
import { CLAIM_STALE_MS, LocalStore } from '../pipeline/store/local.ts';
import { isPreconditionFailed } from '../pipeline/store/store.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { Crash, withFaultHook } from './support/fault-points.ts';
import { withTemp } from './support/scope.ts';

const claims = async (dir: string) => (await readdir(dir)).filter((f) => f.includes('.cas.'));

/** A claim's text as a writer of this machine whose process is gone left it. */
const crashedClaim = (pid = 2 ** 22 + 5) => JSON.stringify({ ...selfStamp(), pid, pid_start: '1' });

/** One conditional write of `text` to `k` at `version`, with `act` run at the fault point `point`: 'written', or its error. */
function writeWithFault(dir: string, version: string, text: string, point: string, act: () => void): Promise<unknown> {
  return withFaultHook(
    (name) => {
      if (name === point) act();
    },
    () => new LocalStore(dir).write('k', text, { ifMatch: version }).then(() => 'written', (err: unknown) => err),
  );
}

/** A rejection check: the error has this errno code. */
const code = (expected: string) => (err: unknown) => (err as NodeJS.ErrnoException).code === expected;

/** An error as the file system raises it. */
const errno = (code: string) => Object.assign(new Error(code), { code });

type FsFunction = (...args: unknown[]) => Promise<unknown>;
const fsPromises = createRequire(import.meta.url)('node:fs/promises') as Record<string, unknown>;

/**
 * Runs `fn` with functions of node:fs/promises replaced (each replacement gets the
 * real one), for failures a test cannot make a real file system produce (an EIO, a
 * racer acting between two calls). Named imports see the replacements too
 * (syncBuiltinESMExports); the real functions are back afterwards.
 */
async function withFs<T>(replace: Record<string, (real: FsFunction) => FsFunction>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(replace).map((name) => [name, fsPromises[name]]));
  for (const [name, make] of Object.entries(replace)) fsPromises[name] = make(saved[name] as FsFunction);
  syncBuiltinESMExports();
  try {
    return await fn();
  } finally {
    Object.assign(fsPromises, saved);
    syncBuiltinESMExports();
  }
}

test('a write is read back with a version that changes on every write', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const v1 = await store.write('a/b.json', 'one');
    const r1 = await store.read('a/b.json');
    assert.equal(r1?.body.toString(), 'one');
    assert.equal(r1?.version, v1);
    const v2 = await store.write('a/b.json', 'two');
    assert.notEqual(v2, v1);
    assert.equal((await store.read('a/b.json'))?.version, v2);
    assert.equal(await store.read('nothing'), undefined);
  });
});

test('create-if-absent: of many creators racing, exactly one wins in every round', async () => {
  for (let round = 0; round < 15; round++) {
    await withTemp(async (dir) => {
      const results = await Promise.allSettled(Array.from({ length: 2 + (round % 5) }, (_, i) => new LocalStore(dir).write('k', `writer ${i}`, { ifNoneMatch: true })));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`);
      for (const r of results) if (r.status === 'rejected') assert.ok(isPreconditionFailed(r.reason), String(r.reason));
      assert.deepEqual((await readdir(dir)).filter((f) => f !== 'k'), [], 'no temp file left');
    });
  }
});

test('compare-and-swap: of many writers swapping the same version, exactly one wins per version; the others change nothing', async () => {
  const random = mulberry32(11);
  for (let round = 0; round < 12; round++) {
    await withTemp(async (dir) => {
      const store = new LocalStore(dir);
      let version = await store.write('k', 'v0');
      for (let generation = 1; generation <= 3; generation++) {
        const racers = 2 + Math.floor(random() * 5);
        const results = await Promise.allSettled(Array.from({ length: racers }, (_, i) => new LocalStore(dir).write('k', `g${generation} racer ${i}`, { ifMatch: version })));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, version: r.value }] : []));
        assert.equal(won.length, 1, `round ${round} generation ${generation}: ${won.length} winners`);
        for (const r of results) if (r.status === 'rejected') assert.ok(isPreconditionFailed(r.reason), String(r.reason));
        const now = await store.read('k');
        assert.equal(now?.body.toString(), `g${generation} racer ${won[0]!.i}`);
        assert.equal(now?.version, won[0]!.version);
        // A stale writer of an older version loses too.
        await assert.rejects(store.write('k', 'stale', { ifMatch: version }), isPreconditionFailed);
        version = won[0]!.version;
      }
      assert.deepEqual(await claims(dir), [], 'claims are dropped');
    });
  }
});

test('a conditional delete removes only the version read', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const v1 = await store.write('k', 'one');
    await store.write('k', 'two');
    await assert.rejects(store.delete('k', { ifMatch: v1 }), isPreconditionFailed);
    const now = await store.read('k');
    await store.delete('k', { ifMatch: now!.version });
    assert.equal(await store.exists('k'), false);
    await assert.rejects(store.delete('k', { ifMatch: now!.version }), isPreconditionFailed);
  });
});

test('a claim left by a crashed writer is broken: at once when its process is gone, after CLAIM_STALE_MS otherwise; a live one blocks', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    // A live writer (this process) holds the claim: the swap loses.
    await writeFile(claim, JSON.stringify(selfStamp()));
    await assert.rejects(store.write('k', 'two', { ifMatch: version }), isPreconditionFailed);
    // A writer of this machine that is gone.
    await writeFile(claim, crashedClaim(2 ** 22 + 3));
    const v2 = await store.write('k', 'two', { ifMatch: version });
    // A writer of another machine: only its age tells.
    const claim2 = join(dir, `.k.cas.${v2}`);
    await writeFile(claim2, JSON.stringify({ ...selfStamp(), host: 'elsewhere' }));
    await assert.rejects(store.write('k', 'three', { ifMatch: v2 }), isPreconditionFailed);
    const old = new Date(Date.now() - CLAIM_STALE_MS - 1000);
    await utimes(claim2, old, old);
    await store.write('k', 'three', { ifMatch: v2 });
    assert.equal((await store.read('k'))?.body.toString(), 'three');
  });
});

test('a reader never sees a write half done: every read during a large write is the old or the new object, whole', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const before = 'a'.repeat(4 << 20);
    const after = 'b'.repeat(8 << 20);
    const version = await store.write('_staging/s/checkpoint.json', before);
    const seen = new Set<string>();
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const text = await readFile(join(dir, '_staging/s/checkpoint.json'), 'utf8').catch(() => 'missing');
        seen.add(text === before ? 'old' : text === after ? 'new' : `partial ${text.length}`);
        await new Promise((r) => setImmediate(r));
      }
    })();
    await store.write('_staging/s/checkpoint.json', after, { ifMatch: version });
    writing = false;
    await reader;
    assert.deepEqual([...seen].filter((s) => s !== 'old' && s !== 'new'), [], 'no partial or missing object was ever visible');
  });
});

test('staging is private, the rest and publish folders inside staging are readable (under the umask)', async () => {
  await withTemp(async (dir) => {
    const previous = process.umask(0o022);
    try {
      const store = new LocalStore(dir);
      await store.write('_staging/s/checkpoint.json', '{}');
      await store.upload('_staging/s/publish-ab/part.csv', (async function* () {
        yield Buffer.from('x');
      })());
      await store.write('access_keys/_LATEST', 'x');
      const mode = async (p: string) => (await stat(join(dir, p))).mode & 0o777;
      assert.equal(await mode('_staging'), 0o700);
      assert.equal(await mode('_staging/s'), 0o700);
      assert.equal(await mode('_staging/s/checkpoint.json'), 0o600);
      assert.equal(await mode('_staging/s/publish-ab'), 0o755);
      assert.equal(await mode('_staging/s/publish-ab/part.csv'), 0o644);
      assert.equal(await mode('access_keys'), 0o755);
      assert.equal(await mode('access_keys/_LATEST'), 0o644);
    } finally {
      process.umask(previous);
    }
  });
});

test('an upload whose source fails leaves nothing; one whose folder cannot be written is OUTPUT_IO naming the file', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const boom = new Error('source failed');
    await assert.rejects(
      store.upload('x/file.csv', (async function* () {
        yield Buffer.from('partial');
        throw boom;
      })()),
      (err) => err === boom,
    );
    assert.deepEqual(await readdir(join(dir, 'x')), []);
    await writeFile(join(dir, 'blocker'), '');
    await assert.rejects(store.upload('blocker/file.csv', (async function* () {})()), (err: unknown) => err instanceof Error && (err as NodeJS.ErrnoException).code === 'ENOTDIR' || (err instanceof ExportError && err.code === 'OUTPUT_IO'));
  });
});

test('promote makes the staged folder the published one in one step, and done again after a crash it completes', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await store.write('_staging/s/publish-ab/part.csv', 'rows');
    await store.write('_staging/s/publish-ab/_SUCCESS', '');
    await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['part.csv', '_SUCCESS']);
    assert.deepEqual((await readdir(join(dir, 'access_keys/snapshot_id=s'))).sort(), ['_SUCCESS', 'part.csv']);
    // The rename happened before a crash: promoting again is a no-op.
    await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['part.csv', '_SUCCESS']);
    await store.write('_staging/t/publish-cd/_SUCCESS', '');
    await store.write('access_keys/snapshot_id=t/other', 'x');
    await assert.rejects(store.promote('_staging/t/publish-cd/', 'access_keys/snapshot_id=t/', ['_SUCCESS']), (err: unknown) => err instanceof ExportError && err.code === 'SNAPSHOT_PUBLISHED');
  });
});

/** Every file and folder under `dir`, relative, sorted (temp and claim files included). */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

const bytes = (text: string) => (async function* () {
  yield Buffer.from(text);
})();

test('keys are paths under the root; the empty key is the root', () => {
  const store = new LocalStore('/data/export');
  assert.equal(store.describe(''), '/data/export');
  assert.equal(store.describe('access_keys/snapshot_id=x/_SUCCESS'), join('/data/export', 'access_keys', 'snapshot_id=x', '_SUCCESS'));
});

test('bodies of every size are written exactly, the version read is the version written, and nothing else is left', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    for (const body of ['', 'x', 'xy', 'héllo wörld', Buffer.from([0, 1, 2, 255]), 'z'.repeat(100_000)]) {
      const version = await store.write('k', body);
      const back = await store.read('k');
      assert.deepEqual(back?.body, Buffer.from(body), `${body.length} bytes`);
      assert.equal(back?.version, version);
    }
    const created = await store.write('new', 'n', { ifNoneMatch: true });
    assert.equal((await store.read('new'))?.version, created, 'a create returns the version of what it created');
    assert.deepEqual(await tree(dir), ['k', 'new']);
  });
});

test('a write that fails midway leaves the old object whole and no temp file', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const v1 = await store.write('_staging/s/checkpoint.json', 'old contents');
    for (const condition of [undefined, { ifMatch: v1 }, { ifNoneMatch: true as const }]) {
      await assert.rejects(
        withFaultHook(
          (name, detail) => {
            if (name === 'store-write-midway' && detail === '_staging/s/checkpoint.json') throw new Crash(name);
          },
          () => store.write('_staging/s/checkpoint.json', 'new contents', condition),
        ),
        Crash,
      );
      assert.equal((await store.read('_staging/s/checkpoint.json'))?.body.toString(), 'old contents', JSON.stringify(condition));
      assert.deepEqual(await tree(join(dir, '_staging/s')), ['checkpoint.json'], `${JSON.stringify(condition)}: no temp or claim file left`);
    }
  });
});

test('a write through a file in the way fails; a read of a folder fails; neither is "absent"', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await store.write('blocker', 'x');
    await assert.rejects(store.write('blocker/inner.json', 'y'), (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOTDIR');
    await store.write('folder/k', 'x');
    await assert.rejects(store.read('folder'), (err: unknown) => (err as NodeJS.ErrnoException).code === 'EISDIR');
    assert.equal(await store.exists('blocker/inner.json'), false, 'under a file: absent');
    assert.equal(await store.exists('folder'), true);
    assert.equal(await store.exists('missing/deeper'), false);
  });
});

test('a create meeting a folder at its key fails the precondition; one the file system refuses raises its error; neither leaves a temp file', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await mkdir(join(dir, 'k'));
    await writeFile(join(dir, 'k', 'inside'), '');
    // A folder at the key: link() says EEXIST, which is what a create must report as "exists".
    await assert.rejects(store.write('k', 'x', { ifNoneMatch: true }), isPreconditionFailed);
    const long = 'n'.repeat(250);
    await assert.rejects(store.write(long, 'x', { ifNoneMatch: true }), (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENAMETOOLONG');
    assert.deepEqual(await tree(dir), ['k', 'k/inside']);
  });
});

test('a replace over a folder fails with its error and leaves no temp file', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await store.write('k/inside', 'x');
    await assert.rejects(store.write('k', 'y'), (err: unknown) => ['EISDIR', 'ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? ''));
    assert.deepEqual(await tree(dir), ['k', 'k/inside']);
  });
});

test('a compare-and-swap on a missing key, or under a file, fails the precondition and leaves no claim', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const v = await store.write('k', 'one');
    await store.delete('k');
    await assert.rejects(store.write('k', 'two', { ifMatch: v }), isPreconditionFailed);
    await assert.rejects(store.delete('k', { ifMatch: v }), isPreconditionFailed);
    await store.write('f', 'file');
    // Writing makes the folder first, which a file in the way refuses (its error); a
    // conditional delete finds the key is not there.
    await assert.rejects(store.write('f/k', 'x', { ifMatch: v }), (err: unknown) => isPreconditionFailed(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR');
    await assert.rejects(store.delete('f/k', { ifMatch: v }), isPreconditionFailed, 'a file where its folder would be: the key is not there');
    await assert.rejects(store.delete('gone/k', { ifMatch: v }), isPreconditionFailed, 'the folder is gone, and the key with it');
    assert.deepEqual(await tree(dir), ['f']);
  });
});

test('a claim that is not a process stamp blocks while it is young and is broken once old', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    // A stamp of this machine with no pid says nothing about its writer either.
    const { host, boot_id } = selfStamp();
    for (const text of ['not json', '{"pid":"7"}', 'null', JSON.stringify({ host, boot_id, pid_start: null })]) {
      await writeFile(claim, text);
      await assert.rejects(store.write('k', 'two', { ifMatch: version }), isPreconditionFailed, text);
    }
    const old = new Date(Date.now() - CLAIM_STALE_MS);
    await utimes(claim, old, old);
    await store.write('k', 'two', { ifMatch: version });
    assert.deepEqual(await claims(dir), [], 'taken over, then dropped with the one above it');
  });
});

test('of writers racing to break the same stale claim, one wins the version and the others fail the precondition', async () => {
  const random = mulberry32(17);
  // 120 rounds of 2 to 5 racers, each starting after a random few turns of the event
  // loop, so their steps interleave differently from round to round.
  for (let round = 0; round < 120; round++) {
    await withTemp(async (dir) => {
      const version = await new LocalStore(dir).write('k', 'one');
      await writeFile(join(dir, `.k.cas.${version}`), crashedClaim());
      const racers = 2 + Math.floor(random() * 4);
      const results = await Promise.allSettled(
        Array.from({ length: racers }, async (_, i) => {
          for (let turns = Math.floor(random() * 4); turns > 0; turns--) await new Promise((r) => setImmediate(r));
          await new LocalStore(dir).write('k', `writer ${i}`, { ifMatch: version });
          return i;
        }),
      );
      const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      assert.equal(won.length, 1, `round ${round}: ${racers} racers`);
      for (const r of results) if (r.status === 'rejected') assert.ok(isPreconditionFailed(r.reason), String(r.reason));
      assert.equal(await readFile(join(dir, 'k'), 'utf8'), `writer ${won[0]}`, `round ${round}: the winner's text`);
      assert.deepEqual(await tree(dir), ['k']);
    });
  }
});

test('racers with a stop injected: one of them crashes at a random step, and over the race and a rerun the version is still replaced exactly once', async () => {
  const random = mulberry32(23);
  const points = ['cas-claim-judged-stale', 'cas-claimed', 'store-write-midway'];
  for (let round = 0; round < 60; round++) {
    await withTemp(async (dir) => {
      const version = await new LocalStore(dir).write('k', 'one');
      const claim = join(dir, `.k.cas.${version}`);
      if (random() < 0.7) await writeFile(claim, crashedClaim());
      const point = points[Math.floor(random() * points.length)]!;
      const race = (wave: string) =>
        Promise.allSettled(
          Array.from({ length: 2 + Math.floor(random() * 3) }, async (_, i) => {
            for (let turns = Math.floor(random() * 4); turns > 0; turns--) await new Promise((r) => setImmediate(r));
            await new LocalStore(dir).write('k', `${wave} ${i}`, { ifMatch: version });
            return `${wave} ${i}`;
          }),
        );
      let crashed = false;
      const first = await withFaultHook(
        (name) => {
          if (name !== point || crashed) return;
          crashed = true;
          throw new Crash(name);
        },
        () => race('first'),
      );
      // A claim the crashed writer held stays (of any generation), stamped by a process that is now gone.
      for (const f of await claims(dir)) await writeFile(join(dir, f), crashedClaim(2 ** 22 + 7));
      const rerun = await race('rerun');
      const all = [...first, ...rerun];
      const won = all.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      assert.equal(won.length, 1, `round ${round} (${point}): ${won.join(', ')}`);
      for (const r of all) if (r.status === 'rejected') assert.ok(isPreconditionFailed(r.reason) || r.reason instanceof Crash, String(r.reason));
      assert.equal(await readFile(join(dir, 'k'), 'utf8'), won[0], `round ${round}: the winner's text`);
    });
  }
});

test('a writer that judged a claim stale, while another writer that finished dropped it and a third claimed the version afresh, withdraws its claim and loses', async () => {
  await withTemp(async (dir) => {
    const version = await new LocalStore(dir).write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    await writeFile(claim, crashedClaim());
    const live = JSON.stringify({ ...selfStamp(), writer: 'the other one' });
    // Right after this writer judged the claim stale, it is gone (a writer that took it
    // over finished and dropped it) and a new, live claim is in its place.
    const outcome = await writeWithFault(dir, version, 'late writer', 'cas-claim-judged-stale', () => {
      unlinkSync(claim);
      writeFileSync(claim, live);
    });
    assert.ok(isPreconditionFailed(outcome), `the late writer loses: ${String(outcome)}`);
    assert.equal(readFileSync(claim, 'utf8'), live, "the other writer's claim is untouched");
    assert.deepEqual(await claims(dir), [`.k.cas.${version}`], 'the claim it made over the gone one is withdrawn');
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), 'one', 'the key is unchanged');
  });
});

test('a holder whose claim was replaced after it took it (the narrow race above) changes nothing and leaves the other claim', async () => {
  await withTemp(async (dir) => {
    const version = await new LocalStore(dir).write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    const other = JSON.stringify({ ...selfStamp(), writer: 'a third one' });
    const outcome = await writeWithFault(dir, version, 'holder', 'cas-claimed', () => {
      unlinkSync(claim);
      writeFileSync(claim, other);
    });
    assert.ok(isPreconditionFailed(outcome), `the holder stops: ${String(outcome)}`);
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), 'one', 'the key is unchanged');
    assert.equal(readFileSync(claim, 'utf8'), other, 'the claim in place is not removed by the holder');
  });
});

test('a holder overtaken by a newer claim (a writer that judged it stale) changes nothing and drops only its own claim', async () => {
  await withTemp(async (dir) => {
    const version = await new LocalStore(dir).write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    const crashed = crashedClaim();
    const newer = JSON.stringify({ ...selfStamp(), writer: 'took it over' });
    await writeFile(claim, crashed);
    // This writer takes the crashed writer's claim over (generation 1); right after, another
    // one, which judged it frozen, makes generation 2.
    const outcome = await writeWithFault(dir, version, 'overtaken', 'cas-claimed', () => writeFileSync(`${claim}.g2`, newer));
    assert.ok(isPreconditionFailed(outcome), String(outcome));
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), 'one');
    assert.deepEqual((await claims(dir)).sort(), [`.k.cas.${version}`, `.k.cas.${version}.g2`], 'its own claim dropped, the older and the newer left to the newest');
    assert.equal(readFileSync(`${claim}.g2`, 'utf8'), newer);
  });
});

test('a holder whose claim is gone (taken over and dropped by a writer that finished) changes nothing', async () => {
  await withTemp(async (dir) => {
    const version = await new LocalStore(dir).write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    const outcome = await writeWithFault(dir, version, 'late', 'cas-claimed', () => unlinkSync(claim));
    assert.ok(isPreconditionFailed(outcome), String(outcome));
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), 'one');
    assert.deepEqual(await tree(dir), ['k']);
  });
});

test('claims are ordered by generation as a number (past 9, whatever order the folder lists them in), and a claim of another version is not one of this version', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    const crashed = crashedClaim();
    // Eleven crashed writers, each having taken over the one before.
    for (let g = 0; g <= 10; g++) await writeFile(g === 0 ? claim : `${claim}.g${g}`, crashed);
    // Live claims whose names start like this version's: another version's, and not a claim.
    const live = JSON.stringify(selfStamp());
    for (const name of [`.k.cas.${version}7.g11`, `.k.cas.${version}.g11x`, `.k.cas.${version}.g011`]) await writeFile(join(dir, name), live);
    const made: string[] = [];
    await withFs({
      link: (real) => async (from, to) => {
        made.push(String(to));
        return real(from, to);
      },
    }, () => store.write('k', 'two', { ifMatch: version }));
    assert.deepEqual(made.filter((f) => f.includes('.cas.')), [`${claim}.g11`], 'the newest, generation 10, is taken over');
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), 'two');
    assert.deepEqual((await claims(dir)).sort(), [`.k.cas.${version}.g011`, `.k.cas.${version}.g11x`, `.k.cas.${version}7.g11`], "this version's claims all dropped, the others left");
  });
});

test("listing a version's claims: a folder that fails is the swap's error; a claim gone before it is judged is looked for again; one that cannot be read is the swap's error", async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    await withFs({ readdir: (real) => async (...args) => (args[0] === dir ? Promise.reject(errno('EIO')) : real(...args)) }, async () => {
      await assert.rejects(store.write('k', 'two', { ifMatch: version }), code('EIO'));
    });
    // A crashed writer's claim, dropped by another writer between the listing and the check.
    await writeFile(claim, crashedClaim());
    let dropped = false;
    await withFs({
      lstat: (real) => async (...args) => {
        if (args[0] === claim && !dropped) {
          dropped = true;
          rmSync(claim);
        }
        return real(...args);
      },
    }, () => store.write('k', 'two', { ifMatch: version }));
    assert.ok(dropped);
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), 'two');
    assert.deepEqual(await tree(dir), ['k']);
    // A claim that cannot be read can be judged neither live nor stale: that error, and it stays.
    const v2 = (await store.read('k'))!.version;
    const claim2 = join(dir, `.k.cas.${v2}`);
    await writeFile(claim2, crashedClaim());
    await withFs({ readFile: (real) => async (...args) => (args[0] === claim2 ? Promise.reject(errno('EIO')) : real(...args)) }, async () => {
      await assert.rejects(store.write('k', 'three', { ifMatch: v2 }), code('EIO'));
    });
    assert.deepEqual(await claims(dir), [`.k.cas.${v2}`]);
    // Read once to be judged stale, it fails when read again to check that what this writer
    // took over is still there: the error, and this writer's new claim withdrawn.
    let reads = 0;
    await withFs({ readFile: (real) => async (...args) => (args[0] === claim2 && ++reads === 2 ? Promise.reject(errno('EIO')) : real(...args)) }, async () => {
      await assert.rejects(store.write('k', 'three', { ifMatch: v2 }), code('EIO'));
    });
    assert.equal(reads, 2);
    assert.deepEqual(await claims(dir), [`.k.cas.${v2}`]);
  });
});

test('an upload streams its chunks into the key whole, returning their size and sha256', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const chunks = Array.from({ length: 40 }, (_, i) => Buffer.alloc(16 * 1024 + i, i));
    const result = await store.upload('a/b/part.bin', (async function* () {
      yield* chunks;
    })());
    const all = Buffer.concat(chunks);
    assert.deepEqual(await readFile(join(dir, 'a/b/part.bin')), all);
    assert.deepEqual(result, { bytes: all.length, sha256: createHash('sha256').update(all).digest('hex') });
    const empty = await store.upload('a/empty', (async function* () {})());
    assert.deepEqual(empty, { bytes: 0, sha256: createHash('sha256').digest('hex') });
    assert.deepEqual(await tree(join(dir, 'a')), ['b', 'b/part.bin', 'empty']);
  });
});

test('an upload the file system refuses is OUTPUT_IO naming the file, leaving nothing; an encoder error passes unchanged', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const long = `x/${'n'.repeat(250)}`;
    await assert.rejects(store.upload(long, bytes('data')), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message === `cannot write ${join(dir, long)}: ENAMETOOLONG` && err.context.file === join(dir, long));
    // The key is a folder: the final rename fails.
    await store.write('y/part.csv/inside', 'x');
    await assert.rejects(store.upload('y/part.csv', bytes('data')), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message.startsWith(`cannot write ${join(dir, 'y/part.csv')}: E`));
    assert.deepEqual(await tree(join(dir, 'y')), ['part.csv', 'part.csv/inside'], 'no temp file left');
    const bad = new ExportError('INTERNAL', 'record 3 (AKIA): status is missing');
    await assert.rejects(store.upload('z/part.csv', (async function* () {
      yield Buffer.from('header\n');
      throw bad;
    })()), (err) => err === bad);
    const errno = Object.assign(new Error('source EIO'), { code: 'EIO' });
    await assert.rejects(store.upload('z/part.csv', (async function* () {
      throw errno;
    })()), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.cause === errno, 'an errno error is about the file');
    assert.deepEqual(await readdir(join(dir, 'z')), []);
  });
});

test('a disk that fills up during an upload is OUTPUT_IO naming the file, leaving nothing', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { appendFile: (...args: unknown[]) => Promise<void> };
    await probe.close();
    const original = proto.appendFile;
    const full = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    proto.appendFile = async () => {
      throw full;
    };
    try {
      await assert.rejects(store.upload('p/part.csv', bytes('rows')), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message === `cannot write ${join(dir, 'p/part.csv')}: ENOSPC` && err.cause === full);
    } finally {
      proto.appendFile = original;
    }
    assert.deepEqual(await readdir(join(dir, 'p')), []);
  });
});

test('a missing key reads as a stream error with code ENOENT; an existing one streams its bytes, 256 KiB at a time unless told', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await assert.rejects(async () => {
      for await (const _ of store.readStream('nope')) void _;
    }, (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT');
    const big = Buffer.alloc(600 * 1024, 7);
    await store.write('big', big);
    const chunks: Buffer[] = [];
    for await (const c of store.readStream('big')) chunks.push(c);
    assert.deepEqual(Buffer.concat(chunks), big);
    assert.deepEqual(chunks.map((c) => c.length), [256 * 1024, 256 * 1024, 88 * 1024]);
    const small: Buffer[] = [];
    for await (const c of store.readStream('big', { chunkBytes: 100 * 1024 })) small.push(c);
    assert.deepEqual(Buffer.concat(small), big);
    assert.deepEqual(small.map((c) => c.length), [100 * 1024, 100 * 1024, 100 * 1024, 100 * 1024, 100 * 1024, 100 * 1024]);
  });
});

test('list finds every file under a folder, recursively, as keys; a missing folder or a file lists nothing', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    for (const k of ['s/a', 's/b/c', 's/b/d/e', 'other/x', 'sx']) await store.write(k, '1');
    assert.deepEqual((await store.list('s/')).sort(), ['s/a', 's/b/c', 's/b/d/e']);
    assert.deepEqual((await store.list('s')).sort(), ['s/a', 's/b/c', 's/b/d/e'], 'with or without the slash');
    assert.deepEqual(await store.list('missing/'), []);
    assert.deepEqual(await store.list('sx/'), []);
    assert.deepEqual((await store.list('')).sort(), ['other/x', 's/a', 's/b/c', 's/b/d/e', 'sx']);
  });
});

test('list returns keys only: not the temp file of a write a crash abandoned, nor a claim; a key named like a dot-file is still a key', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    for (const k of ['s/a', 's/checkpoint.json', 's/.hidden', 's/.b.tmp', 's/.c.cas']) await store.write(k, '1');
    // A SIGKILL midway through replacing s/a leaves half the bytes in a temp file beside it.
    await writeFile(tempPathFor(join(dir, 's', 'a')), '{"half":');
    // A compare-and-swap claim left by a crash.
    const version = (await store.read('s/a'))!.version;
    await writeFile(join(dir, 's', `.a.cas.${version}`), JSON.stringify(selfStamp()));
    await writeFile(join(dir, 's', `.checkpoint.json.cas.${(await store.read('s/checkpoint.json'))!.version}`), JSON.stringify(selfStamp()));
    const files = await readdir(join(dir, 's'));
    assert.equal(files.filter((f) => f.endsWith('.tmp') && f !== '.b.tmp').length, 1, `the abandoned temp is on disk: ${files.join(', ')}`);
    assert.deepEqual((await store.list('s/')).sort(), ['s/.b.tmp', 's/.c.cas', 's/.hidden', 's/a', 's/checkpoint.json']);
    assert.equal((await store.read('s/a'))!.body.toString(), '1', 'the key is as it was');
    await store.deletePrefix('s/');
    assert.deepEqual(await readdir(dir), [], 'the leftovers go with their folder');
  });
});

test('deleting a folder removes everything under it; deleting what is not there is fine', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    for (const k of ['s/a', 's/b/c', 'keep/x']) await store.write(k, '1');
    await store.deletePrefix('s/');
    assert.deepEqual(await tree(dir), ['keep', 'keep/x']);
    await store.deletePrefix('s/');
    await store.deletePrefix('gone/deeper/');
    await store.delete('gone/deeper/k');
    await store.delete('keep/x');
    assert.deepEqual(await tree(dir), ['keep']);
  });
});

test('folders are created one level at a time, each with the mode of its place, also when two writers create them at once', async () => {
  await withTemp(async (dir) => {
    const previous = process.umask(0o022);
    try {
      const store = new LocalStore(dir, { privatePrefix: 'secret/', publicSegment: /^pub/ });
      await Promise.all([store.write('secret/a/b/c.json', 'x'), store.write('secret/a/b/d.json', 'y'), store.write('secret/a/pub-1/e.csv', 'z'), store.write('open/f', 'w')]);
      const mode = async (p: string) => (await stat(join(dir, p))).mode & 0o777;
      assert.deepEqual(await Promise.all(['secret', 'secret/a', 'secret/a/b', 'secret/a/b/c.json', 'secret/a/pub-1', 'secret/a/pub-1/e.csv', 'open', 'open/f'].map(mode)), [0o700, 0o700, 0o700, 0o600, 0o755, 0o644, 0o755, 0o644]);
      await store.write('_staging/s/checkpoint.json', 'x');
      assert.equal(await mode('_staging/s/checkpoint.json'), 0o644, 'with another private prefix, _staging is not private');
    } finally {
      process.umask(previous);
    }
  });
});

test('promote makes a published folder readable even when it was staged private, and fails on a missing source', async () => {
  await withTemp(async (dir) => {
    const previous = process.umask(0o022);
    try {
      const store = new LocalStore(dir, { publicSegment: /^never$/ });
      await store.write('_staging/s/publish-ab/_SUCCESS', '');
      assert.equal((await stat(join(dir, '_staging/s/publish-ab'))).mode & 0o777, 0o700);
      const renamed: string[] = [];
      await withFaultHook((name, detail) => void renamed.push(`${name} ${detail}`), () => store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['_SUCCESS']));
      assert.deepEqual(renamed, ['publish-renamed access_keys/snapshot_id=s/']);
      assert.equal((await stat(join(dir, 'access_keys/snapshot_id=s'))).mode & 0o777, 0o755);
      assert.equal((await stat(join(dir, 'access_keys'))).mode & 0o777, 0o755);
      await assert.rejects(store.promote('_staging/t/publish-cd/', 'access_keys/snapshot_id=t/', ['_SUCCESS']), (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT', 'nothing staged and nothing published');
      await assert.rejects(store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', []), (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL');
      await store.write('_staging/u/publish-ef/_SUCCESS', '');
      await store.write('access_keys/snapshot_id=u/_SUCCESS', '');
      await assert.rejects(store.promote('_staging/u/publish-ef/', 'access_keys/snapshot_id=u/', ['_SUCCESS']), (err: unknown) => err instanceof ExportError && err.code === 'SNAPSHOT_PUBLISHED' && err.message.includes(join(dir, 'access_keys/snapshot_id=u')) && err.context.file === join(dir, 'access_keys/snapshot_id=u'));
    } finally {
      process.umask(previous);
    }
  });
});

test('every file-system errno met during an upload is OUTPUT_IO naming the file; other errors pass as they are', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    for (const code of ['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOTDIR', 'EEXIST', 'EIO', 'EISDIR', 'EMFILE', 'ENFILE', 'ENOENT', 'ELOOP', 'ENAMETOOLONG', 'EFBIG']) {
      const failure = Object.assign(new Error(code), { code });
      await assert.rejects(store.upload('u/part.csv', (async function* () {
        throw failure;
      })()), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message === `cannot write ${join(dir, 'u/part.csv')}: ${code}`, code);
    }
    const other = Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    await assert.rejects(store.upload('u/part.csv', (async function* () {
      throw other;
    })()), (err) => err === other);
  });
});

test('the empty key is the root exactly as given', () => {
  assert.equal(new LocalStore('./out/').describe(''), './out/');
  assert.equal(new LocalStore('./out/').describe('k'), join('out', 'k'));
});

test('the store never creates its root nor climbs above it: under a missing root every write fails ENOENT', { timeout: 20_000 }, async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(join(dir, 'missing'));
    for (const key of ['k', './k', 'a/k']) await assert.rejects(store.write(key, 'x'), code('ENOENT'), key);
    assert.deepEqual(await readdir(dir), []);
  });
});

test('only a path segment starting with the public segment is public: "republish" under staging stays private', async () => {
  await withTemp(async (dir) => {
    const previous = process.umask(0o022);
    try {
      const store = new LocalStore(dir);
      await store.write('_staging/s/republish/x', '1');
      const mode = async (p: string) => (await stat(join(dir, p))).mode & 0o777;
      assert.equal(await mode('_staging/s/republish'), 0o700);
      assert.equal(await mode('_staging/s/republish/x'), 0o600);
    } finally {
      process.umask(previous);
    }
  });
});

test('a folder the file system fails to check or to create fails the write with that error; a folder that exists is not created again', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await store.write('a/b/k', 'x');
    await withFs({ mkdir: () => async () => Promise.reject(errno('EIO')) }, async () => {
      await store.write('a/b/k2', 'y');
      await assert.rejects(store.write('c/k', 'z'), code('EIO'));
    });
    await withFs({ stat: (real) => async (path, ...rest) => (path === join(dir, 'a') ? Promise.reject(errno('EIO')) : real(path, ...rest)) }, async () => {
      await assert.rejects(store.write('a/k3', 'w'), code('EIO'));
    });
    assert.deepEqual(await tree(dir), ['a', 'a/b', 'a/b/k', 'a/b/k2']);
  });
});

test('a name the file system refuses is an error for read and exists, not "absent"', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const long = 'n'.repeat(300);
    await assert.rejects(store.read(long), code('ENAMETOOLONG'));
    await assert.rejects(store.exists(long), code('ENAMETOOLONG'));
  });
});

test('reads close the file they open, also when the read fails', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await store.write('folder/k', 'x');
    const fds = async () => (await readdir('/proc/self/fd')).length;
    const before = await fds();
    for (let i = 0; i < 20; i++) {
      assert.equal((await store.read('folder/k'))?.body.toString(), 'x');
      await assert.rejects(store.read('folder'), code('EISDIR'));
    }
    assert.ok((await fds()) <= before, 'no file left open');
  });
});

test('a write whose folder is deleted midway fails with its own error naming the key (or the crash), never with the clean-up\'s', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const path = join(dir, 's', 'k');
    const deleteFolder = (crash: boolean) => (name: string) => {
      if (name !== 'store-write-midway') return;
      // A swap's claim is being made beside the write: a file it creates between the
      // removal's listing and its rmdir is ENOTEMPTY for the removal, which tries again.
      for (let tries = 1; ; tries++) {
        try {
          rmSync(join(dir, 's'), { recursive: true, force: true });
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' || tries === 100) throw err;
        }
      }
      if (crash) throw new Crash(name);
    };
    for (const kind of ['plain', 'ifMatch', 'ifNoneMatch']) {
      for (const crash of [true, false]) {
        const version = await store.write('s/k', 'old');
        const condition = kind === 'ifMatch' ? { ifMatch: version } : kind === 'ifNoneMatch' ? { ifNoneMatch: true as const } : undefined;
        const renameFailed = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT' && (err as { dest?: string }).dest === path;
        // A swap writes its bytes while it claims the version: it may find the key gone
        // (its folder with it) before its rename does, which is a precondition failed.
        const expected = crash ? Crash : kind === 'ifMatch' ? (err: unknown) => isPreconditionFailed(err) || renameFailed(err) : renameFailed;
        await assert.rejects(withFaultHook(deleteFolder(crash), () => store.write('s/k', 'new', condition)), expected, `${kind}, crash ${crash}`);
      }
    }
    await assert.rejects(store.upload('s/part.csv', (async function* () {
      yield Buffer.from('rows');
      rmSync(join(dir, 's'), { recursive: true, force: true });
      yield Buffer.from('more rows');
    })()), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message === `cannot write ${join(dir, 's/part.csv')}: ENOENT`);
  });
});

test('a claim is private to its writer (0600) while it is held', async () => {
  await withTemp(async (dir) => {
    const previous = process.umask(0o022);
    try {
      const store = new LocalStore(dir);
      const version = await store.write('k', 'one');
      let mode: number | undefined;
      await withFaultHook((name, claim) => {
        if (name === 'cas-claimed') mode = statSync(claim!).mode & 0o777;
      }, () => store.write('k', 'two', { ifMatch: version }));
      assert.equal(mode, 0o600);
    } finally {
      process.umask(previous);
    }
  });
});

test('a claim the file system refuses to create fails the swap with that error', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    await withFs({ link: (real) => async (from, to) => (to === claim ? Promise.reject(errno('EIO')) : real(from, to)) }, async () => {
      await assert.rejects(store.write('k', 'two', { ifMatch: version }), code('EIO'));
    });
    assert.deepEqual(await tree(dir), ['k']);
  });
});

test('taking over a stale claim: a racer that takes it over first wins, a failed create is an error, and claims of crashed writers taken over at each try make it lose', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    const crashed = crashedClaim(2 ** 22 + 3);
    const live = JSON.stringify({ ...selfStamp(), writer: 'the other one' });
    await writeFile(claim, crashed);
    // Another writer takes the stale claim over first (its next generation): this one lost the version.
    await withFaultHook((name) => {
      if (name === 'cas-claim-judged-stale') writeFileSync(`${claim}.g1`, live);
    }, async () => {
      await assert.rejects(store.write('k', 'two', { ifMatch: version }), isPreconditionFailed);
    });
    assert.deepEqual((await claims(dir)).sort(), [`.k.cas.${version}`, `.k.cas.${version}.g1`], 'neither claim is touched');
    assert.equal(await readFile(`${claim}.g1`, 'utf8'), live);
    rmSync(`${claim}.g1`);
    await withFs({ link: (real) => async (from, to) => (to === `${claim}.g1` ? Promise.reject(errno('EIO')) : real(from, to)) }, async () => {
      await assert.rejects(store.write('k', 'two', { ifMatch: version }), code('EIO'));
    });
    assert.deepEqual(await tree(dir), [`.k.cas.${version}`, 'k'], 'no temp file, no new claim');
    // Each claim it tries to create, a crashed writer created first: after three tries it loses,
    // and leaves them to the next writer, which takes over the newest and drops them all.
    const made: string[] = [];
    await withFs({
      link: (real) => async (from, to) => {
        if (String(to).includes('.cas.')) {
          made.push(String(to));
          await writeFile(String(to), crashed);
        }
        return real(from, to);
      },
    }, async () => {
      await assert.rejects(store.write('k', 'two', { ifMatch: version }), isPreconditionFailed);
    });
    assert.deepEqual(made, [1, 2, 3].map((g) => `${claim}.g${g}`));
    assert.equal((await claims(dir)).length, 4);
    assert.equal((await store.read('k'))?.body.toString(), 'one');
    await store.write('k', 'two', { ifMatch: version });
    assert.equal((await store.read('k'))?.body.toString(), 'two');
    assert.deepEqual(await claims(dir), []);
  });
});

test('two writers that judged the same claim stale both create its next generation: one creates it and wins, the other finds it live and loses', async () => {
  await withTemp(async (dir) => {
    const version = await new LocalStore(dir).write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    await writeFile(claim, crashedClaim());
    // The first to link waits until the other has judged the claim too and is linking.
    let arrived: () => void = () => undefined;
    const both = new Promise<void>((resolve) => (arrived = resolve));
    let linking = 0;
    const results = await withFs({
      link: (real) => async (from, to) => {
        if (to === `${claim}.g1` && ++linking === 1) await both;
        else if (to === `${claim}.g1`) arrived();
        return real(from, to);
      },
    }, () => Promise.allSettled(['a', 'b'].map((w) => new LocalStore(dir).write('k', w, { ifMatch: version }).then(() => w))));
    assert.equal(linking, 2, 'both judged the claim stale and tried to take it over');
    const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    assert.equal(won.length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(isPreconditionFailed(r.reason), String(r.reason));
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), won[0]);
    assert.deepEqual(await tree(dir), ['k']);
  });
});

test('a writer that judged a claim stale, while another took it over, changed the key and dropped the claims, withdraws the claim it then makes and loses', async () => {
  await withTemp(async (dir) => {
    const version = await new LocalStore(dir).write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    await writeFile(claim, crashedClaim());
    let other: Promise<unknown> | undefined;
    const outcome = await withFs({
      link: (real) => async (from, to) => {
        if (to === `${claim}.g1` && other === undefined) {
          // Between this writer's judging and its create, another one runs whole.
          other = new LocalStore(dir).write('k', 'other', { ifMatch: version });
          await other;
        }
        return real(from, to);
      },
    }, () => new LocalStore(dir).write('k', 'late', { ifMatch: version }).then(() => 'written', (err: unknown) => err));
    assert.ok(isPreconditionFailed(outcome), String(outcome));
    assert.equal(readFileSync(join(dir, 'k'), 'utf8'), 'other');
    assert.deepEqual(await tree(dir), ['k'], 'its withdrawn claim is not left');
  });
});

test('a claim is stale from exactly CLAIM_STALE_MS of age', async (t) => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    const claim = join(dir, `.k.cas.${version}`);
    await writeFile(claim, JSON.stringify(selfStamp()));
    const made = 1_700_000_000; // whole seconds: the age is exact
    await utimes(claim, made, made);
    const now = t.mock.method(Date, 'now', () => made * 1000 + CLAIM_STALE_MS - 1);
    await assert.rejects(store.write('k', 'two', { ifMatch: version }), isPreconditionFailed);
    now.mock.mockImplementation(() => made * 1000 + CLAIM_STALE_MS);
    await store.write('k', 'two', { ifMatch: version });
    assert.equal((await store.read('k'))?.body.toString(), 'two');
  });
});

test('a claim that vanishes while it is checked (a dangling link) is no obstacle', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    await symlink(join(dir, 'nowhere'), join(dir, `.k.cas.${version}`));
    await store.write('k', 'two', { ifMatch: version });
    assert.equal((await store.read('k'))?.body.toString(), 'two');
    assert.deepEqual(await tree(dir), ['k']);
  });
});

test('an upload writes in batches of 256 KiB, then the rest, and never an empty write', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { appendFile: (data: Uint8Array) => Promise<void> };
    await probe.close();
    const original = proto.appendFile;
    const writes: number[] = [];
    proto.appendFile = function (this: unknown, data: Uint8Array) {
      writes.push(data.length);
      return original.call(this, data);
    };
    const KiB = 1024;
    try {
      for (const [count, expected] of [[8, [256 * KiB, 256 * KiB]], [5, [256 * KiB, 64 * KiB]], [0, []]] as const) {
        writes.length = 0;
        const chunks = Array.from({ length: count }, (_, i) => Buffer.alloc(64 * KiB, i));
        await store.upload('u/part.bin', (async function* () {
          yield* chunks;
        })());
        assert.deepEqual(writes, expected, `${count} chunks of 64 KiB`);
        assert.deepEqual(await readFile(join(dir, 'u/part.bin')), Buffer.concat(chunks));
      }
    } finally {
      proto.appendFile = original;
    }
  });
});

test('list of a name the file system refuses is an error, not an empty folder', async () => {
  await withTemp(async (dir) => {
    await assert.rejects(new LocalStore(dir).list(`${'n'.repeat(300)}/`), code('ENAMETOOLONG'));
  });
});

test('list and deletePrefix take nested folders, with or without the slash; deleteKeys deletes exactly the keys', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    for (const k of ['s/a', 's/b/c', 's/b/d/e', 'sb/x']) await store.write(k, '1');
    assert.deepEqual((await store.list('s/b/')).sort(), ['s/b/c', 's/b/d/e']);
    await store.deletePrefix('s/b/');
    assert.deepEqual(await tree(dir), ['s', 's/a', 'sb', 'sb/x']);
    await store.deleteKeys(['s/a', 'sb/x', 'missing']);
    assert.deepEqual(await tree(dir), ['s', 'sb']);
  });
});

test('a deletion whose folder cannot be flushed fails with that error', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await store.write('s/k', '1');
    await store.write('s/x/y', '1');
    await withFs({ open: (real) => async (path, ...rest) => (path === join(dir, 's') ? Promise.reject(errno('EIO')) : real(path, ...rest)) }, async () => {
      await assert.rejects(store.delete('s/k'), code('EIO'));
      await assert.rejects(store.deletePrefix('s/x/'), code('EIO'));
    });
    assert.deepEqual(await tree(dir), ['s']);
  });
});

test('promote errors say what they are about: the folder with nothing to publish, the rename refused (EEXIST too) as its cause', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await assert.rejects(store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', []), (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL' && err.message === `nothing to publish in ${join(dir, '_staging/s/publish-ab')}`);
    await store.write('_staging/s/publish-ab/_SUCCESS', '');
    await store.write('access_keys/snapshot_id=s/_SUCCESS', '');
    await assert.rejects(store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['_SUCCESS']), (err: unknown) => err instanceof ExportError && err.code === 'SNAPSHOT_PUBLISHED' && (err.cause as NodeJS.ErrnoException).code === 'ENOTEMPTY');
    // Some file systems say EEXIST where Linux says ENOTEMPTY.
    const source = join(dir, '_staging/s/publish-ab');
    await withFs({ rename: (real) => async (from, to) => (from === source ? Promise.reject(errno('EEXIST')) : real(from, to)) }, async () => {
      await assert.rejects(store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['_SUCCESS']), (err: unknown) => err instanceof ExportError && err.code === 'SNAPSHOT_PUBLISHED' && (err.cause as NodeJS.ErrnoException).code === 'EEXIST');
    });
  });
});

test('an upload source that throws a non-error passes it unchanged; a write failure that is not an error is still OUTPUT_IO', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    for (const thrown of [undefined, null, 'text']) {
      await assert.rejects(store.upload('u/part.csv', (async function* () {
        yield Buffer.from('x');
        throw thrown;
      })()), (err) => err === thrown, String(thrown));
    }
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { appendFile: (...args: unknown[]) => Promise<void> };
    await probe.close();
    const original = proto.appendFile;
    proto.appendFile = async () => Promise.reject(undefined);
    try {
      await assert.rejects(store.upload('u/part.csv', bytes('rows')), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message === `cannot write ${join(dir, 'u/part.csv')}: undefined`);
    } finally {
      proto.appendFile = original;
    }
    assert.deepEqual(await readdir(join(dir, 'u')), []);
  });
});

test('a body of one byte or none is written whole, with no midway point to crash at', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const points: string[] = [];
    await withFaultHook((name, detail) => void points.push(`${name} ${detail}`), async () => {
      for (const body of ['', 'x', Buffer.from([7])]) await store.write('k', body);
      await store.write('k2', 'xy');
    });
    assert.deepEqual(points, ['store-write-midway k2']);
  });
});

test('a compare-and-swap on a key the file system cannot resolve (a link loop) fails with that error, not the precondition', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const version = await store.write('k', 'one');
    await symlink('loop', join(dir, 'loop'));
    await assert.rejects(store.write('loop', 'two', { ifMatch: version }), code('ELOOP'));
    await assert.rejects(store.delete('loop', { ifMatch: version }), code('ELOOP'));
    assert.deepEqual(await tree(dir), ['k', 'loop']);
  });
});
