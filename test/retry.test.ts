import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RateLimiter } from '@smithy/core/retry';
import { THROTTLE_COOLDOWN_MS, THROTTLE_MIN_SAMPLE, ThrottleShareGate } from '../pipeline/source/retry.ts';

function recorder() {
  const seen: ('throttle' | 'ok')[] = [];
  const inner: RateLimiter = {
    getSendToken: async () => undefined,
    updateClientSendingRate: (r: unknown) => void seen.push((r as { errorType?: string }).errorType === 'THROTTLING' ? 'throttle' : 'ok'),
  };
  return { inner, seen };
}

const THROTTLE = { errorType: 'THROTTLING' };

test('scattered throttles never reach the rate limiter', () => {
  const { inner, seen } = recorder();
  let t = 0;
  const gate = new ThrottleShareGate(inner, () => (t += 50));
  let successes = 0;
  for (let i = 0; i < 1000; i++) {
    const throttled = i % 9 === 0;
    if (!throttled) successes++;
    gate.updateClientSendingRate(throttled ? THROTTLE : {});
  }
  assert.ok(!seen.includes('throttle'));
  assert.equal(seen.length, successes, 'a gated throttle is not passed on as a success either');
});

test('a run of throttles cuts the rate, at most once per cooldown', () => {
  const { inner, seen } = recorder();
  let t = 0;
  const gate = new ThrottleShareGate(inner, () => t);
  for (let i = 0; i < THROTTLE_MIN_SAMPLE; i++) gate.updateClientSendingRate({});
  for (let i = 0; i < 50; i++) {
    t += 10;
    gate.updateClientSendingRate(THROTTLE);
  }
  assert.equal(seen.filter((s) => s === 'throttle').length, 1, '500 ms of throttles: one cut');
  t += THROTTLE_COOLDOWN_MS;
  gate.updateClientSendingRate(THROTTLE);
  assert.equal(seen.filter((s) => s === 'throttle').length, 2);
});

test('too few answers are not judged', () => {
  const { inner, seen } = recorder();
  const gate = new ThrottleShareGate(inner, () => 0);
  for (let i = 0; i < THROTTLE_MIN_SAMPLE - 1; i++) gate.updateClientSendingRate(THROTTLE);
  assert.ok(!seen.includes('throttle'));
});

test('a client is unthrottled once it had THROTTLE_MIN_SAMPLE answers and no throttle, and never again after one', () => {
  const { inner } = recorder();
  const gate = new ThrottleShareGate(inner, () => 0);
  for (let i = 0; i < THROTTLE_MIN_SAMPLE - 1; i++) gate.updateClientSendingRate({});
  assert.equal(gate.unthrottled, false, 'too few answers to tell');
  gate.updateClientSendingRate({});
  assert.equal(gate.unthrottled, true);
  gate.updateClientSendingRate(THROTTLE);
  for (let i = 0; i < 1000; i++) gate.updateClientSendingRate({});
  assert.equal(gate.unthrottled, false, 'one throttle: the account has met its rate limit');

  const early = new ThrottleShareGate(recorder().inner, () => 0);
  early.updateClientSendingRate(THROTTLE);
  for (let i = 0; i < THROTTLE_MIN_SAMPLE; i++) early.updateClientSendingRate({});
  assert.equal(early.unthrottled, false);
});
