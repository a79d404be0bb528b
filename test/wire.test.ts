/**
 * Wire slots (pipeline/source/wire.ts): a client's requests out at once, counted at the
 * SDK's request handler. A real IAMClient runs its whole stack (serialize, sign, retry,
 * parse) over a transport the test holds: it sees each request as it would go out, and
 * answers when told.
 */
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { IAMClient, ListAccessKeysCommand } from '@aws-sdk/client-iam';
import { HttpResponse } from '@smithy/core/transport';
import { limitWire, WireSlots } from '../pipeline/source/wire.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { drain } from './support/settle.ts';

const answer = (user: string) =>
  `<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListAccessKeysResult><IsTruncated>false</IsTruncated><AccessKeyMetadata><member><UserName>${user}</UserName><AccessKeyId>AKIA${user.toUpperCase()}</AccessKeyId><Status>Active</Status><CreateDate>2020-01-01T00:00:00Z</CreateDate></member></AccessKeyMetadata></ListAccessKeysResult><ResponseMetadata><RequestId>r-${user}</RequestId></ResponseMetadata></ListAccessKeysResponse>`;

interface Sent {
  readonly user: string;
  /** Answers the request: its whole body at once (`complete`, as Node says of a message fully in), or a head whose body follows. */
  readonly answer: (how?: 'whole' | 'head') => PassThrough | undefined;
  readonly fail: (error: Error) => void;
}

/**
 * A transport that records what goes out and answers when the test says. It counts a
 * request as out from its sending until its answer is whole (a head's body ended), or it
 * failed, or its call was aborted (refused as Node's handler refuses it, before or after
 * sending).
 */
function heldTransport() {
  const sent: Sent[] = [];
  let out = 0;
  let peak = 0;
  const aborted = () => Object.assign(new Error('Request aborted'), { name: 'AbortError' });
  const handler = {
    metadata: { handlerProtocol: 'http/1.1' },
    handle(request: { body?: unknown }, options: { abortSignal?: AbortSignal } = {}) {
      const signal = options.abortSignal;
      if (signal?.aborted) return Promise.reject(aborted());
      const user = new URLSearchParams(String(request.body)).get('UserName') ?? '';
      peak = Math.max(peak, ++out);
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        out--;
        return true;
      };
      return new Promise<{ response: HttpResponse }>((resolve, reject) => {
        signal?.addEventListener('abort', () => settle() && reject(aborted()), { once: true });
        sent.push({
          user,
          answer: (how = 'whole') => {
            if (settled) return undefined;
            const headers = { 'content-type': 'text/xml' };
            if (how === 'whole') {
              settle();
              resolve({ response: new HttpResponse({ statusCode: 200, headers, body: Object.assign(Readable.from([Buffer.from(answer(user))]), { complete: true }) }) });
              return undefined;
            }
            settled = true; // no abort after the head: the body is what is left
            const body = Object.assign(new PassThrough(), { complete: false });
            body.once('end', () => out--);
            resolve({ response: new HttpResponse({ statusCode: 200, headers, body }) });
            return body;
          },
          fail: (error) => settle() && reject(error),
        });
      });
    },
    updateHttpClientConfig() {},
    httpHandlerConfigs: () => ({}),
  };
  const client = new IAMClient({ region: 'us-east-1', credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: 'x' }, maxAttempts: 1, requestHandler: handler });
  return { client, sent, out: () => out, peak: () => peak };
}

const ask = (client: IAMClient, user: string, signal?: AbortSignal) =>
  client.send(new ListAccessKeysCommand({ UserName: user }), signal ? { abortSignal: signal } : {});

test('a client limited to 2 slots has at most 2 requests out; the next goes out as an answer comes in, in the order the calls were made', async () => {
  const { client, sent, peak } = heldTransport();
  limitWire(client, 2, () => false);
  const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
  const calls = users.map((u) => ask(client, u));
  await drain();
  assert.deepEqual(sent.map((s) => s.user), ['u1', 'u2'], 'two out, four waiting with their requests built');
  sent[1]!.answer();
  await drain();
  assert.deepEqual(sent.map((s) => s.user), ['u1', 'u2', 'u3']);
  sent[0]!.answer();
  sent[2]!.answer();
  await drain();
  assert.deepEqual(sent.map((s) => s.user), ['u1', 'u2', 'u3', 'u4', 'u5']);
  for (let i = 3; i < 6; i++) {
    sent[i]!.answer();
    await drain();
  }
  const outputs = await Promise.all(calls);
  assert.deepEqual(outputs.map((o) => o.AccessKeyMetadata?.[0]?.UserName), users, 'every answer parsed by the SDK, each to its call');
  assert.equal(peak(), 2);
});

test('an answer whose body is still coming keeps its slot until the body has been read', async () => {
  const { client, sent } = heldTransport();
  limitWire(client, 1, () => false);
  const first = ask(client, 'u1');
  const second = ask(client, 'u2');
  await drain();
  const body = sent[0]!.answer('head')!;
  body.write(answer('u1').slice(0, 40));
  await drain();
  assert.equal(sent.length, 1, 'the head alone frees nothing');
  body.end(answer('u1').slice(40));
  assert.equal((await first).AccessKeyMetadata?.[0]?.AccessKeyId, 'AKIAU1');
  await drain();
  assert.equal(sent.length, 2, 'the body read, the next request goes out');
  sent[1]!.answer();
  assert.equal((await second).AccessKeyMetadata?.[0]?.UserName, 'u2');
});

test('answers that come in one turn of the event loop each send the next request before the SDK parses any of them', async () => {
  const { client, sent } = heldTransport();
  limitWire(client, 2, () => false);
  const calls = ['u1', 'u2', 'u3', 'u4'].map((u) => ask(client, u));
  await drain();
  const outWhenParsed: string[][] = [];
  for (const call of calls.slice(0, 2)) void call.then(() => outWhenParsed.push(sent.map((s) => s.user)));
  // Two answers in two callbacks of one turn, as two sockets' reads are in Node's poll phase.
  setImmediate(() => sent[0]!.answer());
  setImmediate(() => sent[1]!.answer());
  await drain();
  assert.deepEqual(outWhenParsed, [
    ['u1', 'u2', 'u3', 'u4'],
    ['u1', 'u2', 'u3', 'u4'],
  ], 'u4 went out before u1\'s answer was parsed');
  sent[2]!.answer();
  sent[3]!.answer();
  assert.deepEqual((await Promise.all(calls)).map((o) => o.AccessKeyMetadata?.[0]?.UserName), ['u1', 'u2', 'u3', 'u4']);
});

test('a request that fails gives its slot back', async () => {
  const { client, sent } = heldTransport();
  limitWire(client, 1, () => false);
  const first = ask(client, 'u1');
  const second = ask(client, 'u2');
  await drain();
  sent[0]!.fail(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
  await assert.rejects(first, { code: 'ECONNRESET' });
  await drain();
  assert.deepEqual(sent.map((s) => s.user), ['u1', 'u2']);
  sent[1]!.answer();
  await second;
});

test('a call stopped while it waits for a slot is never sent, rejects as an aborted call, and takes no slot', async () => {
  const { client, sent } = heldTransport();
  const slots = limitWire(client, 1, () => false);
  const stop = new AbortController();
  const first = ask(client, 'u1');
  const stopped = ask(client, 'u2', stop.signal);
  const third = ask(client, 'u3');
  await drain();
  assert.equal(slots.waiting, 2);
  stop.abort();
  await assert.rejects(stopped, { name: 'AbortError' });
  assert.equal(slots.waiting, 1, 'the stopped call left the line');
  sent[0]!.answer();
  await first;
  await drain();
  assert.deepEqual(sent.map((s) => s.user), ['u1', 'u3'], 'u2 never went out');
  sent[1]!.answer();
  await third;
  // Every slot came back: two calls at once go out at once.
  const again = [ask(client, 'u4'), ask(client, 'u5')];
  await drain();
  assert.deepEqual(sent.map((s) => s.user).slice(2), ['u4']);
  sent[2]!.answer();
  await drain();
  sent[3]!.answer();
  await Promise.all(again);
});

test('wire slots are a positive integer; a taker whose signal was aborted before gets none', async () => {
  assert.throws(() => new WireSlots(0), RangeError);
  assert.throws(() => new WireSlots(1.5), RangeError);
  const slots = new WireSlots(1);
  assert.equal(await slots.take(AbortSignal.abort()), false);
  assert.equal(await slots.take(), true, 'the slot is still free');
  const waiter = slots.take();
  assert.equal(slots.waiting, 1);
  slots.give();
  assert.equal(await waiter, true);
  slots.give();
  assert.equal(await slots.take(), true, 'given back to the pool when no one waits');
});

/**
 * Many rounds of callers against a few slots, with answers whole or in two parts, failures
 * and stops (before a call is sent, while it is out) in a seeded random order: never more
 * requests out than slots, every call settles (answered, failed, or aborted), a call
 * stopped before its turn is never sent, and no slot is lost.
 */
test('wire slots under random answers, failures and stops: never more out than slots, every call settles, none lost', async () => {
  const random = mulberry32(37);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  for (let round = 0; round < 40; round++) {
    const { client, sent, out, peak } = heldTransport();
    const n = 1 + Math.floor(random() * 4);
    const slots = limitWire(client, n, () => false);
    let settled = 0;
    const calls = Array.from({ length: 4 + Math.floor(random() * 16) }, (_, i) => {
      const stop = new AbortController();
      const user = `r${round}u${i}`;
      const result = ask(client, user, stop.signal)
        .then(
          () => 'answered' as const,
          (err: Error) => (err.name === 'AbortError' ? ('aborted' as const) : ('failed' as const)),
        )
        .finally(() => settled++);
      return { user, stop, result, stoppedWaiting: false };
    });
    const bodies: PassThrough[] = [];
    const label = `round ${round} (${n} slots, ${calls.length} calls)`;
    for (let step = 0; step < 500; step++) {
      await drain(5);
      assert.ok(out() <= n, `${label}: ${out()} out`);
      const r = random();
      if (r < 0.15) {
        const c = pick(calls);
        c.stoppedWaiting ||= !sent.some((q) => q.user === c.user);
        c.stop.abort();
      } else if (r < 0.25 && bodies.length > 0) bodies.shift()!.end(answer('x'));
      else if (sent.length > 0) {
        const q = pick(sent);
        if (r < 0.35) q.fail(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
        else {
          const body = q.answer(r < 0.45 ? 'head' : 'whole');
          if (body) bodies.push(body);
        }
      }
      if (settled === calls.length && bodies.length === 0) break;
    }
    for (const b of bodies) b.end(answer('x'));
    for (const q of sent) q.answer();
    await drain(10);
    const outcomes = await Promise.all(calls.map((c) => c.result));
    assert.ok(peak() <= n, `${label}: peak ${peak()}`);
    for (const [i, c] of calls.entries()) {
      if (c.stoppedWaiting) assert.ok(!sent.some((q) => q.user === c.user), `${label}: ${c.user} was stopped before its turn and sent`);
      if (!c.stop.signal.aborted) assert.notEqual(outcomes[i], 'aborted', `${label}: ${c.user} aborted without a stop`);
    }
    assert.equal(slots.waiting, 0, `${label}: nobody left waiting`);
    // No slot lost: n new calls go out at once.
    const more = Array.from({ length: n }, (_, i) => ask(client, `r${round}more${i}`));
    await drain(10);
    assert.equal(out(), n, `${label}: ${out()} of ${n} slots free at the end`);
    for (const q of sent.slice(-n)) q.answer();
    await Promise.all(more);
  }
});
