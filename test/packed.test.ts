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

test('a PackedMap deletes as a Map does, in the middle of probe runs and across compactions: what is left keeps its values and the order it was last set in', () => {
  const random = mulberry32(17);
  const packed = new PackedMap();
  // A Map in the order keys were last set (a replaced key moves to the end, as in PackedMap).
  const reference = new Map<string, string>();
  const keys: string[] = []; // the live ones
  const gone: string[] = [];
  const pick = () => Math.floor(random() * keys.length);
  let compacted = 0;
  let held = 0;
  // 160,000 steps of ~50-byte entries: the map grows to ~3 MiB, then mostly shrinks, so the
  // dead outweigh the live (and 1 MiB) several times.
  for (let i = 0; i < 160_000; i++) {
    const r = random();
    const growing = i < 80_000;
    if (r < (growing ? 0.8 : 0.05) || keys.length === 0) {
      const key = userId(random);
      keys.push(key);
      const value = `/${i.toString(36)}\t${'v'.repeat(Math.floor(random() * 20))}`;
      packed.set(key, value);
      reference.delete(key);
      reference.set(key, value);
    } else if (r < (growing ? 0.9 : 0.15)) {
      const key = keys[pick()]!;
      packed.set(key, `again ${i}`);
      reference.delete(key);
      reference.set(key, `again ${i}`);
    } else {
      const at = pick();
      const key = keys[at]!;
      keys[at] = keys[keys.length - 1]!;
      keys.pop();
      gone.push(key);
      assert.equal(packed.delete(key), true, `delete ${key}`);
      reference.delete(key);
      assert.equal(packed.delete(key), false, `${key} deleted twice`);
    }
    if (packed.bytes < held) compacted++;
    held = packed.bytes;
    if (i % 4999 === 0) {
      assert.equal(packed.size, reference.size);
      for (const [k, v] of reference) assert.equal(packed.get(k), v, k);
    }
  }
  assert.equal(packed.size, reference.size);
  for (const k of keys) assert.equal(packed.get(k), reference.get(k), k);
  for (const k of gone) if (!reference.has(k)) assert.equal(packed.has(k), false, k);
  assert.deepEqual([...packed.keys()], [...reference.keys()], 'the keys left, once each, in the order last set');
  assert.ok(compacted >= 2, `compacted ${compacted} times`);
  assert.equal(packed.delete('AIDANOTTHERE'), false);
  // Everything deleted: the blocks and the table go.
  for (const k of [...reference.keys()]) packed.delete(k);
  assert.equal(packed.size, 0);
  assert.deepEqual([...packed.keys()], []);
  assert.ok(packed.bytes < 1 << 20, `${packed.bytes} bytes held once all is deleted`);
  packed.set('back', 'again');
  assert.equal(packed.get('back'), 'again');
});

test('a PackedMap compacts only once the dead outweigh the live and pass 1 MiB: a small map, or one mostly live, keeps its blocks', () => {
  const random = mulberry32(23);
  const small = new PackedMap();
  const few = Array.from({ length: 5_000 }, () => userId(random));
  for (const k of few) small.set(k, 'x'.repeat(40));
  const before = small.bytes;
  for (const k of few.slice(0, 4_900)) small.delete(k);
  assert.equal(small.bytes, before, 'under 1 MiB dead: nothing copied');
  assert.equal(small.size, 100);
  for (const k of few.slice(4_900)) assert.equal(small.get(k), 'x'.repeat(40));

  const big = new PackedMap();
  const many = Array.from({ length: 60_000 }, () => userId(random));
  for (const k of many) big.set(k, 'y'.repeat(40));
  const full = big.bytes;
  for (const k of many.slice(0, 29_000)) big.delete(k);
  assert.equal(big.bytes, full, 'fewer dead than live: nothing copied');
  for (const k of many.slice(29_000, 31_000)) big.delete(k);
  assert.ok(big.bytes < full / 2, `more dead than live: ${big.bytes} of ${full} bytes held`);
  assert.equal(big.size, 29_000);
  for (const k of many.slice(31_000)) assert.equal(big.get(k), 'y'.repeat(40), k);
  assert.deepEqual([...big.keys()], many.slice(31_000), 'copied in the order they were set');
  for (const k of many.slice(0, 31_000)) assert.equal(big.has(k), false, k);
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
