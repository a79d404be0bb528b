/**
 * The IAM client's shared middleware handlers (reuseHandlers): one handler per
 * command type and abort signal, against the fake over HTTP, so the SDK's whole
 * stack (signing, retries, XML) runs.
 */
import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { after, before, test } from 'node:test';
import { IAMClient, ListAccessKeysCommand, ListUsersCommand } from '@aws-sdk/client-iam';
import { instrument, newApiStats, reuseHandlers, sdkLogger } from '../pipeline/source/client.ts';
import { startFakeIam, type FakeIam } from './fake-iam/server.ts';

let fake: FakeIam;
before(async () => {
  fake = await startFakeIam({ users: 24, seed: 7, keysPerUser: { min: 1, max: 2 } });
});
after(() => fake.close());

function newClient(): IAMClient {
  const client = new IAMClient({ region: 'us-east-1', endpoint: fake.url, credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: 'secret' }, maxAttempts: 1 });
  instrument(client, newApiStats());
  reuseHandlers(client);
  return client;
}

/** Counts how often the SDK resolves a ListAccessKeys middleware stack (once per call without shared handlers). */
async function countingResolves<T>(fn: () => Promise<T>): Promise<{ result: T; resolves: number }> {
  const proto = ListAccessKeysCommand.prototype as { resolveMiddleware: (...a: unknown[]) => unknown };
  const original = proto.resolveMiddleware;
  let resolves = 0;
  proto.resolveMiddleware = function (this: unknown, ...a: unknown[]) {
    resolves++;
    return original.apply(this, a);
  };
  try {
    return { result: await fn(), resolves };
  } finally {
    proto.resolveMiddleware = original;
  }
}

test('calls sent with one abort signal share one middleware handler, and concurrent calls through it each get their own answer', async () => {
  fake.configure({ latencyMs: 20 });
  const client = newClient();
  try {
    const users = fake.truth().users.map((u) => u.userName);
    const first = new AbortController();
    const second = new AbortController();
    setMaxListeners(0, first.signal); // as the export does: every call in flight listens
    const { result, resolves } = await countingResolves(() =>
      Promise.all([
        ...users.map((name) => client.send(new ListAccessKeysCommand({ UserName: name }), { abortSignal: first.signal }).then((r) => ({ name, r }))),
        ...users.slice(0, 5).map((name) => client.send(new ListAccessKeysCommand({ UserName: name }), { abortSignal: second.signal }).then((r) => ({ name, r }))),
      ]),
    );
    assert.equal(resolves, 2, 'one handler per signal');
    const keysOf = new Map<string, string[]>();
    for (const k of fake.truth().keys) keysOf.set(k.userName, [...(keysOf.get(k.userName) ?? []), k.accessKeyId]);
    for (const { name, r } of result) {
      assert.deepEqual(r.AccessKeyMetadata?.map((k) => k.UserName), keysOf.get(name)!.map(() => name), `the answer for ${name} is its own`);
      assert.deepEqual(r.AccessKeyMetadata?.map((k) => k.AccessKeyId).sort(), [...keysOf.get(name)!].sort());
    }
  } finally {
    client.destroy();
    fake.configure({ latencyMs: 0 });
  }
});

test('aborting one signal cancels only the calls sent with it, also through a shared handler', async () => {
  fake.configure({ latencyMs: 300 });
  const client = newClient();
  try {
    const [a, b] = [new AbortController(), new AbortController()];
    const name = fake.truth().users[0]!.userName;
    // A first call of each signal makes its handler; the calls after it share it.
    const sent = [a, b, a, b].map((c) => client.send(new ListAccessKeysCommand({ UserName: name }), { abortSignal: c.signal }));
    setTimeout(() => a.abort(), 50);
    const settled = await Promise.allSettled(sent);
    assert.deepEqual(
      settled.map((s) => s.status),
      ['rejected', 'fulfilled', 'rejected', 'fulfilled'],
    );
    for (const s of settled) if (s.status === 'rejected') assert.equal((s.reason as Error).name, 'AbortError');
  } finally {
    client.destroy();
    fake.configure({ latencyMs: 0 });
  }
});

test('a command with middleware of its own, or a call with other options, is sent as it is: its middleware runs on every call', async () => {
  const client = newClient();
  try {
    let own = 0;
    const withOwn = () => {
      const command = new ListUsersCommand({});
      command.middlewareStack.add((next) => async (args) => (own++, next(args)), { step: 'initialize', name: 'testOwn' });
      return command;
    };
    const signal = new AbortController().signal;
    await client.send(new ListUsersCommand({}), { abortSignal: signal }); // a shared handler for ListUsers exists now
    for (let i = 0; i < 3; i++) await client.send(withOwn(), { abortSignal: signal });
    assert.equal(own, 3);
    const { resolves } = await countingResolves(async () => {
      for (let i = 0; i < 3; i++) await client.send(new ListAccessKeysCommand({ UserName: fake.truth().users[0]!.userName }), { abortSignal: signal, requestTimeout: 5_000 });
    });
    assert.equal(resolves, 3, 'other options: resolved per call, as the SDK does');
  } finally {
    client.destroy();
  }
});

test('the SDK builds the log entry of each call only when debug lines are kept', async () => {
  const lines: string[] = [];
  const kept = new IAMClient({ region: 'us-east-1', endpoint: fake.url, credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: 'secret' }, logger: sdkLogger((m) => lines.push(m)) });
  const dropped = new IAMClient({ region: 'us-east-1', endpoint: fake.url, credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: 'secret' }, logger: sdkLogger(undefined) });
  // The entry copies the output through the command's sensitive-data filter: count its calls.
  let filtered = 0;
  const counting = (client: IAMClient) =>
    client.middlewareStack.add(
      (next, context) => {
        const filter = context.outputFilterSensitiveLog;
        context.outputFilterSensitiveLog = (output: unknown) => (filtered++, filter(output));
        return next;
      },
      { step: 'initialize', priority: 'high', name: 'countFilterCalls' },
    );
  counting(kept);
  counting(dropped);
  try {
    await kept.send(new ListUsersCommand({ MaxItems: 2 }));
    assert.equal(lines.length, 1, 'one entry for the call');
    assert.match(lines[0]!, /"commandName":"ListUsersCommand"/);
    assert.equal(filtered, 1, 'the entry was built from the output');
    filtered = 0;
    const r = await dropped.send(new ListUsersCommand({ MaxItems: 2 }));
    assert.equal(r.Users?.length, 2);
    assert.equal(filtered, 0, 'no entry built: the output was not filtered');
  } finally {
    kept.destroy();
    dropped.destroy();
  }
});
