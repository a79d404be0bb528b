/**
 * Runs the fake IAM as its own process, for the demo, the benchmark and
 * anything that cannot import it:
 *
 *   npx tsx test/fake-iam/cli.ts --port 0 --users 300 --seed 1 [--latency-ms 40 ...]
 *
 * Prints exactly one line, `fake-iam listening on <url>`, once it accepts
 * requests; callers wait for that line. SIGTERM or SIGINT closes it and exits 0.
 * Usage errors exit 2 with one line on stderr; a failure to start exits 1.
 */
import { parseArgs } from 'node:util';
import { FakeIamOptionsError, startFakeIam, type FakeIamOptions } from './server.ts';

const USAGE = `usage: npx tsx test/fake-iam/cli.ts [options]
  --port N               TCP port on 127.0.0.1, 0 = any free port (default 0)
  --users N              number of users (default 50)
  --seed N               seed of the data and of every random decision (default 1)
  --keys-min N           fewest keys per user (default 0)
  --keys-max N           most keys per user (default 2)
  --account-id ID        12-digit account id (default 123456789012)
  --latency-ms MS        fixed delay before each answer (default 0)
  --jitter-ms MS         uniform extra delay (default 0)
  --rate R               server-side rate limit, requests per second (default none)
  --burst N              bucket size of the rate limit (default: the rate)
  --throttle P           share of requests answered 400 Throttling
  --server-errors P      share of requests answered 500 ServiceFailure
  --drop P               share of connections destroyed without an answer
  --vanished F           share of users whose ListAccessKeys answers 404 NoSuchEntity
  --denied F             share of users whose ListAccessKeys answers 403 AccessDenied
  --invalid-credentials  every call answers 403 InvalidClientTokenId
  --list-users-denied    ListUsers answers 403 AccessDenied
  --reject-stale-markers a Marker issued before the latest mutation answers 400 ValidationError
  --caller-account-id ID GetCallerIdentity reports this 12-digit account (default: the served one)
  --last-used-denied     GetAccessKeyLastUsed answers 403 AccessDenied
  --report-denied        GenerateCredentialReport and GetCredentialReport answer 403 AccessDenied
  --report-limit-exceeded GenerateCredentialReport answers 409 LimitExceeded
  --report-delay-ms MS   how long a credential report takes to generate (default 0)
  --report-max-age-ms MS age at which a credential report expires (default 14400000, 4 h)
  --accounts N           an organization: N member accounts besides the management one
  --users-per-account-min N, --users-per-account-max N   users in each member (default 0, 5)
  --suspended I,J,...    member indexes (0-based) that are SUSPENDED
  --closed I,J,...       member indexes that are closed (Status SUSPENDED, State CLOSED)
  --role-name NAME       the role AssumeRole may take in members (default OrganizationAccountAccessRole)
  --external-id ID       AssumeRole must pass this ExternalId
  --account-rate R       a rate limit per account, requests per second (default none)
  --account-burst N      bucket size of the per-account limit (default: the rate)
  --help                 this text
Control plane: GET /_fake/stats, GET /_fake/faults, GET /_fake/accounts,
GET /_fake/truth, /_fake/window, /_fake/report (each ?account=ID, default the management account),
POST /_fake/configure (JSON fault options), POST /_fake/stats/reset, POST /_fake/window/start,
POST /_fake/mutate (JSON mutation, or {"churn": {seed, count, kinds?}}; optional "accountId"),
POST /_fake/account ({accountId, status?, closed?, alias?, rootKeysPresent?}).`;

// Numbers are parsed here rather than by parseArgs, which only knows strings.
const number = { type: 'string' } as const;
const flag = { type: 'boolean' } as const;
const FLAGS = {
  port: number,
  users: number,
  seed: number,
  'keys-min': number,
  'keys-max': number,
  'account-id': { type: 'string' },
  'latency-ms': number,
  'jitter-ms': number,
  rate: number,
  burst: number,
  throttle: number,
  'server-errors': number,
  drop: number,
  vanished: number,
  denied: number,
  'invalid-credentials': flag,
  'list-users-denied': flag,
  'reject-stale-markers': flag,
  'caller-account-id': { type: 'string' },
  'last-used-denied': flag,
  'report-denied': flag,
  'report-limit-exceeded': flag,
  'report-delay-ms': number,
  'report-max-age-ms': number,
  accounts: number,
  'users-per-account-min': number,
  'users-per-account-max': number,
  suspended: { type: 'string' },
  closed: { type: 'string' },
  'role-name': { type: 'string' },
  'external-id': { type: 'string' },
  'account-rate': number,
  'account-burst': number,
  help: flag,
} as const;
type NumberFlag = Exclude<
  keyof typeof FLAGS,
  | 'account-id'
  | 'caller-account-id'
  | 'invalid-credentials'
  | 'list-users-denied'
  | 'reject-stale-markers'
  | 'last-used-denied'
  | 'report-denied'
  | 'report-limit-exceeded'
  | 'suspended'
  | 'closed'
  | 'role-name'
  | 'external-id'
  | 'help'
>;

class UsageError extends Error {}

function parse(argv: string[]): FakeIamOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: FLAGS }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return 'help';

  const numeric = (name: NumberFlag): number | undefined => {
    const raw = values[name];
    if (typeof raw !== 'string') return undefined;
    const value = raw.trim() === '' ? Number.NaN : Number(raw);
    if (!Number.isFinite(value)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(raw)}`);
    return value;
  };

  const rate = numeric('rate');
  const burst = numeric('burst');
  if (burst !== undefined && rate === undefined) throw new UsageError('--burst needs --rate');
  const keysMin = numeric('keys-min');
  const keysMax = numeric('keys-max');
  const accountId = values['account-id'];
  const callerAccountId = values['caller-account-id'];
  const indexList = (name: 'suspended' | 'closed'): number[] | undefined => {
    const raw = values[name];
    if (typeof raw !== 'string') return undefined;
    const list = raw.split(',').map((item) => Number(item.trim()));
    if (list.some((n) => !Number.isInteger(n))) throw new UsageError(`--${name} must be a comma-separated list of account indexes, got ${JSON.stringify(raw)}`);
    return list;
  };
  const memberCount = numeric('accounts');
  const accountRate = numeric('account-rate');
  const accountBurst = numeric('account-burst');
  if (accountBurst !== undefined && accountRate === undefined) throw new UsageError('--account-burst needs --account-rate');
  const suspended = indexList('suspended');
  const closed = indexList('closed');
  if ((suspended || closed || values['users-per-account-min'] || values['users-per-account-max']) && memberCount === undefined) {
    throw new UsageError('--suspended, --closed and --users-per-account-* need --accounts');
  }
  const roleName = values['role-name'];
  const externalId = values['external-id'];
  return {
    port: numeric('port'),
    users: numeric('users'),
    seed: numeric('seed'),
    keysPerUser: { min: keysMin, max: keysMax },
    ...(typeof accountId === 'string' ? { accountId } : {}),
    latencyMs: numeric('latency-ms'),
    jitterMs: numeric('jitter-ms'),
    // A bucket of one second's worth of requests unless told otherwise.
    rateLimit: rate === undefined ? null : { perSecond: rate, burst: burst ?? Math.max(1, rate) },
    throttleProbability: numeric('throttle'),
    serverErrorProbability: numeric('server-errors'),
    dropProbability: numeric('drop'),
    vanishedFraction: numeric('vanished'),
    deniedFraction: numeric('denied'),
    invalidCredentials: values['invalid-credentials'] === true,
    listUsersDenied: values['list-users-denied'] === true,
    rejectStaleMarkers: values['reject-stale-markers'] === true,
    ...(typeof callerAccountId === 'string' ? { callerAccountId } : {}),
    lastUsedDenied: values['last-used-denied'] === true,
    reportDenied: values['report-denied'] === true,
    reportLimitExceeded: values['report-limit-exceeded'] === true,
    credentialReport: { delayMs: numeric('report-delay-ms'), maxAgeMs: numeric('report-max-age-ms') },
    ...(memberCount === undefined
      ? {}
      : {
          accounts: {
            count: memberCount,
            usersPerAccount: { min: numeric('users-per-account-min'), max: numeric('users-per-account-max') },
            ...(suspended ? { suspended } : {}),
            ...(closed ? { closed } : {}),
          },
        }),
    ...(typeof roleName === 'string' ? { roleName } : {}),
    ...(typeof externalId === 'string' ? { externalId } : {}),
    accountRateLimit: accountRate === undefined ? null : { perSecond: accountRate, burst: accountBurst ?? Math.max(1, accountRate) },
  };
}

async function main(): Promise<void> {
  let options: FakeIamOptions | 'help';
  try {
    options = parse(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`fake-iam: ${error.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }

  let fake;
  try {
    fake = await startFakeIam(options);
  } catch (error) {
    const usage = error instanceof FakeIamOptionsError;
    process.stderr.write(`fake-iam: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(usage ? 2 : 1);
  }

  const stop = (): void => {
    // A second signal while closing means "now".
    process.once('SIGTERM', () => process.exit(1));
    process.once('SIGINT', () => process.exit(1));
    fake.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`fake-iam: close failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(`fake-iam listening on ${fake.url}\n`);
}

await main();
