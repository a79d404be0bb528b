/**
 * Seeded randomness for the fake. Every choice the fake makes (data, fates,
 * faults, jitter) comes from here so that a seed reproduces a run's data and
 * its sequence of fault decisions.
 */

/** A source of uniform numbers in [0, 1). */
export type Random = () => number;

/** mulberry32: tiny, fast and good enough for test data; not for cryptography. */
export function mulberry32(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * An independent stream for one purpose. Separate streams keep purposes from
 * disturbing each other: turning on jitter must not reshuffle which calls fail,
 * and no fault setting may change the generated data.
 */
export function streamFor(seed: number, purpose: string): Random {
  // FNV-1a of the purpose, mixed into the seed.
  let hash = 0x811c9dc5;
  for (let i = 0; i < purpose.length; i++) {
    hash = Math.imul(hash ^ purpose.charCodeAt(i), 0x01000193);
  }
  return mulberry32((seed ^ hash) >>> 0);
}

/** An integer in [min, max], both inclusive. */
export function intBetween(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** One element of a non-empty list. */
export function pick<T>(random: Random, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new RangeError('pick from an empty list');
  return item;
}

/** One value, chosen with probability proportional to its weight. */
export function weighted<T>(random: Random, choices: readonly (readonly [T, number])[]): T {
  const total = choices.reduce((sum, [, weight]) => sum + weight, 0);
  let point = random() * total;
  for (const [value, weight] of choices) {
    point -= weight;
    if (point < 0) return value;
  }
  const last = choices[choices.length - 1];
  if (last === undefined) throw new RangeError('weighted choice from an empty list');
  return last[0];
}

/** `length` characters drawn from `alphabet`. */
export function randomString(random: Random, alphabet: string, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(random() * alphabet.length)];
  return out;
}

/** A shuffled copy of `items` (Fisher–Yates); the input is left alone. */
export function shuffled<T>(random: Random, items: readonly T[]): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
