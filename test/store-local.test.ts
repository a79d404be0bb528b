import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExportError } from '../pipeline/errors.ts';
import { selfStamp } from '../pipeline/liveness.ts';
import { CLAIM_STALE_MS, LocalStore } from '../pipeline/store/local.ts';
import { isPreconditionFailed } from '../pipeline/store/store.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { withTemp } from './support/scope.ts';

const claims = async (dir: string) => (await readdir(dir)).filter((f) => f.includes('.cas.'));

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
  for (let round = 0; round < 30; round++) {
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
  for (let round = 0; round < 30; round++) {
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
    await writeFile(claim, JSON.stringify({ ...selfStamp(), pid: 2 ** 22 + 3, pid_start: '1' }));
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
