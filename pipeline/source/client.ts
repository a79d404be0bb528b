/**
 * The IAM client: the SDK's own credential chain, region and endpoint resolution
 * (flags first, then AWS_PROFILE, AWS_ENDPOINT_URL_IAM, SSO, IMDS...) and its
 * adaptive retry strategy. A middleware counts calls, attempts and throttles for the
 * manifest and the operator; it observes only, it never decides.
 */
import { IAMClient } from '@aws-sdk/client-iam';
import type { Logger, MetadataBearer, MiddlewareStack } from '@smithy/types';
import { isThrottle } from '../errors.ts';
import { createRetryStrategy, ThrottleShareGate } from './retry.ts';
import { limitWire } from './wire.ts';

/** Live API counters of one run. */
export interface ApiStats {
  /** Logical calls per operation (ListUsers, ListAccessKeys, ...). */
  readonly calls: Record<string, number>;
  /** HTTP attempts, retries included. */
  attempts: number;
  /** Attempts answered with a throttling error. */
  throttles: number;
}

export function newApiStats(): ApiStats {
  return { calls: {}, attempts: 0, throttles: 0 };
}

/** Total logical calls. */
export function totalCalls(stats: ApiStats): number {
  return Object.values(stats.calls).reduce((a, b) => a + b, 0);
}

export interface ClientOptions {
  readonly endpointUrl: string | undefined;
  readonly region: string | undefined;
  readonly profile: string | undefined;
  readonly maxAttempts: number;
  /** Requests out at once (wire slots; see wire.ts). */
  readonly concurrency: number;
}

/** Where the SDK will send each service's calls, as far as the operator configured it. */
export interface Endpoints {
  /** IAM endpoint override (flag, AWS_ENDPOINT_URL_IAM, AWS_ENDPOINT_URL), or undefined for the SDK's default. */
  readonly iam: string | undefined;
  /** The IAM endpoint for messages: the override, or the default one. */
  readonly iamShown: string;
  /**
   * STS endpoint override. The SDK reads AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL
   * itself; when neither is set but IAM's endpoint was overridden (an emulator such
   * as moto or LocalStack, which serve STS at the same URL), STS goes there too,
   * rather than to AWS with credentials that are only valid on the emulator.
   */
  readonly sts: string | undefined;
  readonly stsShown: string;
}

/** The endpoints of a run, from its flags and environment. */
export function endpointsOf(o: Pick<ClientOptions, 'endpointUrl'>, env: NodeJS.ProcessEnv = process.env): Endpoints {
  const iam = o.endpointUrl ?? (env.AWS_ENDPOINT_URL_IAM || undefined) ?? (env.AWS_ENDPOINT_URL || undefined);
  const stsFromEnv = env.AWS_ENDPOINT_URL_STS || env.AWS_ENDPOINT_URL || undefined;
  const sts = stsFromEnv ? undefined : (o.endpointUrl ?? (env.AWS_ENDPOINT_URL_IAM || undefined));
  return { iam, iamShown: iam ?? 'https://iam.amazonaws.com', sts, stsShown: sts ?? stsFromEnv ?? 'https://sts.amazonaws.com' };
}

/**
 * The SDK's own log lines (its warnings, such as "Multiple credential sources
 * detected") go to our logger at debug level instead of the console, so stderr
 * keeps the one line an operator is promised. Without a `debug` sink (debug lines
 * are not kept) the logger has no `info` at all: the SDK's logger middleware sends
 * every call's entry through `logger.info?.(...)`, and only a missing method spares
 * it building that entry (the call's input and output copied through the
 * operation's sensitive-data filter, on the one thread every answer waits for).
 * The SDK's NoOpLogger would spare it too, but the credential chain takes that one
 * for no logger and prints its warnings on the console.
 */
export function sdkLogger(debug: ((message: string) => void) | undefined): Logger {
  const none = () => undefined;
  if (!debug) return { trace: none, debug: none, warn: none, error: none } as Omit<Logger, 'info'> as Logger;
  const sink = (...content: unknown[]) => debug(content.map(logText).join(' '));
  return { trace: none, debug: none, info: sink, warn: sink, error: sink };
}

/** A log argument as text; never throws (an S3 output holds a socket, which JSON cannot show). */
function logText(c: unknown): string {
  if (typeof c === 'string') return c;
  try {
    return JSON.stringify(c);
  } catch {
    return String(c);
  }
}

/**
 * IAM is a global service: the region only picks the signing region and partition.
 * When neither the flag nor the SDK's chain (AWS_REGION, profile) gives one, use
 * us-east-1, as the AWS CLI does for IAM, instead of failing.
 */
export async function resolveRegion(o: Pick<ClientOptions, 'region' | 'profile'>): Promise<string> {
  if (o.region) return o.region;
  const probe = new IAMClient(o.profile ? { profile: o.profile } : {});
  try {
    return await probe.config.region();
  } catch {
    return 'us-east-1';
  } finally {
    probe.destroy();
  }
}

/** Builds the client and wires the counting middleware into `stats`. */
export async function createIamClient(o: ClientOptions, stats: ApiStats, logger?: Logger): Promise<IAMClient> {
  const gate = new ThrottleShareGate();
  const client = new IAMClient({
    region: await resolveRegion(o),
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.endpointUrl ? { endpoint: o.endpointUrl } : {}),
    ...(logger ? { logger } : {}),
    // Adaptive mode (client-side rate limiting), with the limiter gated: see retry.ts.
    retryStrategy: createRetryStrategy(o.maxAttempts, gate),
  });
  return equipIamClient(client, { stats, concurrency: o.concurrency, gate });
}

/**
 * What every account's IAM client gets once built: the counting middleware, the shared
 * middleware handlers, and its wire slots (told by its retry strategy's gate whether IAM
 * has throttled it: wire.ts).
 */
export function equipIamClient(client: IAMClient, o: { stats: ApiStats; concurrency: number; gate: ThrottleShareGate }): IAMClient {
  instrument(client, o.stats);
  reuseHandlers(client);
  limitWire(client, o.concurrency, () => o.gate.unthrottled);
  return client;
}

type SendArgs = Parameters<IAMClient['send']>;

/**
 * Sends calls through a middleware handler resolved once per command type and abort
 * signal, instead of once per call. Resolving the SDK's middleware stack (copying and
 * sorting ~30 entries, building the call's context) was about a sixth of the SDK's
 * CPU per call, on the one thread every answer waits for. The SDK's own
 * `cacheMiddleware` does the same, but only for calls sent without options, and every
 * call here carries the abort signal that cancels it at a stop: a handler is bound to
 * its options, so it is kept per signal (one serves a whole account's calls) and goes
 * with it. A command with middleware of its own (the credential report's content
 * reader), or a call with other options or a callback, goes through `send` as it is.
 */
export function reuseHandlers(client: IAMClient): void {
  const send = client.send.bind(client) as (...args: SendArgs) => Promise<unknown>;
  const bySignal = new WeakMap<object, Map<unknown, ReturnType<SendArgs[0]['resolveMiddleware']>>>();
  const noSignal = {};
  client.send = ((...args: SendArgs) => {
    const [command, options] = args;
    const plain = args.length <= 2 && typeof options !== 'function' && (!options || Object.keys(options).every((k) => k === 'abortSignal'));
    if (!plain || command.middlewareStack.identify().length > 0) return send(...args);
    const key = options?.abortSignal ?? noSignal;
    let handlers = bySignal.get(key);
    if (!handlers) bySignal.set(key, (handlers = new Map()));
    let handler = handlers.get(command.constructor);
    if (!handler) handlers.set(command.constructor, (handler = command.resolveMiddleware(client.middlewareStack, client.config, options)));
    return handler(command).then((result) => result.output);
  }) as IAMClient['send'];
}

/** A client the counting middleware can be added to (every SDK v3 client). */
interface Instrumentable<I extends object, O extends MetadataBearer> {
  readonly middlewareStack: MiddlewareStack<I, O>;
}

/** Adds the counting middleware to any SDK client (IAM, STS, S3, ...): calls per operation, attempts, throttles. */
export function instrument<I extends object, O extends MetadataBearer>(client: Instrumentable<I, O>, stats: ApiStats): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const op = context.commandName?.replace(/Command$/, '') ?? 'Unknown';
      stats.calls[op] = (stats.calls[op] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'ikeCountCalls' },
  );
  // Below the retry middleware (same step, lower priority): runs once per attempt.
  client.middlewareStack.add(
    (next) => async (args) => {
      stats.attempts++;
      try {
        return await next(args);
      } catch (err) {
        if (isThrottle(err)) stats.throttles++;
        throw err;
      }
    },
    { step: 'finalizeRequest', priority: 'low', name: 'ikeCountAttempts' },
  );
}
