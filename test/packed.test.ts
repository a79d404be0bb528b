import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PackedMap, PackedSet } from '../pipeline/packed.ts';
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
  assert.throws(() => m.set('big', 'x'.repeat(1 << 20)), RangeError);
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
