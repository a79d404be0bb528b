import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PackedMap, PackedSet, SortedIds } from '../pipeline/packed.ts';
import { mulberry32 } from './fake-iam/random.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function userId(random: () => number): string {
  let s = 'AIDA';
  for (let i = 0; i < 17; i++) s += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return s;
}

test('a PackedMap answers as a Map does: sets, replacements, misses, sizes and every key once, across blocks and table growth', () => {
  const random = mulberry32(9);
  const packed = new PackedMap();
  const reference = new Map<string, string>();
  const order: string[] = [];
  // ~200,000 entries of ~40 bytes: several 1 MiB blocks and many doublings of the table.
  for (let i = 0; i < 200_000; i++) {
    const replace = reference.size > 0 && random() < 0.05;
    const key = replace ? order[Math.floor(random() * order.length)]! : userId(random);
    if (!replace) order.push(key);
    const value = random() < 0.1 ? '' : `/${'p'.repeat(Math.floor(random() * 30))}\t${i.toString(36)}`;
    packed.set(key, value);
    reference.set(key, value);
  }
  assert.equal(packed.size, reference.size);
  for (const [k, v] of reference) assert.equal(packed.get(k), v, k);
  assert.deepEqual([...packed.keys()].sort(), [...reference.keys()].sort(), 'every key once');
  for (let i = 0; i < 1000; i++) {
    const miss = userId(random) + 'x';
    assert.equal(packed.has(miss), false);
    assert.equal(packed.get(miss), undefined);
  }
  assert.ok(packed.bytes > 4 << 20, `spans blocks: ${packed.bytes} bytes`);
});

test('a PackedMap keeps any text: empty and non-ASCII keys and values, keys that differ only in length or in their last byte', () => {
  const m = new PackedMap();
  const pairs: [string, string][] = [
    ['', 'empty key'],
    ['a', ''],
    ['ab', 'x'],
    ['aB', 'y'],
    ['jörg.müller', 'Zürich 東京 🚀'],
    ['tab\tnew\nline', 'arn:aws:iam::123456789012:user/p/q'],
  ];
  for (const [k, v] of pairs) m.set(k, v);
  for (const [k, v] of pairs) assert.equal(m.get(k), v, JSON.stringify(k));
  assert.equal(m.get('abc'), undefined);
  assert.equal(m.get('A'), undefined);
  assert.equal(m.size, pairs.length);
  m.set('ab', 'replaced');
  assert.equal(m.get('ab'), 'replaced');
  assert.equal(m.size, pairs.length);
  assert.deepEqual([...m.keys()], ['', 'a', 'aB', 'jörg.müller', 'tab\tnew\nline', 'ab'], 'once each, in the order last set');
  assert.throws(() => m.set('big', 'x'.repeat(1 << 23)), RangeError);
  assert.equal(m.get('big'), undefined, 'a refused entry is not there');
});

test('a PackedSet holds each value once; 100,000 user ids take ~3 MiB off the heap, not ~6.5 MiB on it', () => {
  const random = mulberry32(3);
  const ids = Array.from({ length: 100_000 }, () => userId(random));
  const set = new PackedSet(ids);
  for (const id of ids.slice(0, 1000)) set.add(id);
  assert.equal(set.size, new Set(ids).size);
  assert.ok(ids.every((id) => set.has(id)));
  assert.equal(set.has('AIDANOTTHERE'), false);
  assert.deepEqual([...set], [...new Set(ids)]);
  assert.ok(set.bytes <= 4 << 20, `${set.bytes} bytes`);
});

/** The order SortedIds keeps: the bytes of each id's JSON text. */
const byJsonBytes = (a: string, b: string) => Buffer.compare(Buffer.from(JSON.stringify(a)), Buffer.from(JSON.stringify(b)));

test('SortedIds answers as a Set does, and its json() is the sorted ids as JSON text, unchanged by later additions', () => {
  const random = mulberry32(11);
  const ids = new SortedIds();
  const reference = new Set<string>();
  const order: string[] = [];
  let earlier: { bytes: Buffer; text: string; ids: string[] } | undefined;
  // ~30,000 additions, a tenth of them again: many merges (4,096 ids wait at most).
  for (let i = 0; i < 30_000; i++) {
    const again = reference.size > 0 && random() < 0.1;
    const id = again ? order[Math.floor(random() * order.length)]! : random() < 0.01 ? `x"\\${i}\u00e9` : userId(random);
    if (!reference.has(id)) order.push(id);
    ids.add(id);
    reference.add(id);
    if (i % 997 === 0) assert.equal(ids.has(id), true);
    if (i === 12_345) {
      const bytes = ids.json();
      earlier = { bytes, text: bytes.toString('utf8'), ids: [...reference].sort(byJsonBytes) };
    }
  }
  assert.equal(ids.size, reference.size);
  const sorted = [...reference].sort(byJsonBytes);
  assert.deepEqual([...ids], sorted, 'values in order');
  assert.deepEqual(JSON.parse(`[${ids.json().toString('utf8')}]`), sorted, "json() is the inside of the array");
  assert.equal(earlier!.bytes.toString('utf8'), earlier!.text, 'bytes returned earlier are not changed by later additions');
  assert.deepEqual(JSON.parse(`[${earlier!.text}]`), earlier!.ids);
  for (let i = 0; i < 2000; i++) assert.equal(ids.has(userId(random) + 'x'), false);
  for (const id of reference) if (random() < 0.05) assert.equal(ids.has(id), true, id);
});

test('SortedIds: empty, one id, ids that are prefixes of one another, and an id longer than its scratch buffer', () => {
  const empty = new SortedIds();
  assert.equal(empty.json().length, 0);
  assert.deepEqual([...empty], []);
  assert.equal(empty.has(''), false);
  const long = 'L'.repeat(5000);
  const ids = new SortedIds(['AIDAB', 'AIDA', 'AIDABC', '', long, 'AIDA']);
  assert.equal(ids.size, 5);
  assert.deepEqual([...ids], ['', 'AIDA', 'AIDAB', 'AIDABC', long]);
  assert.equal(ids.json().toString('utf8'), `"","AIDA","AIDAB","AIDABC","${long}"`);
  for (const id of ['', 'AIDA', 'AIDAB', 'AIDABC', long]) assert.equal(ids.has(id), true, id.slice(0, 10));
  for (const id of ['AID', 'AIDAA', 'AIDABCD', long + 'L']) assert.equal(ids.has(id), false, id.slice(0, 10));
});
