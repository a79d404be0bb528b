/**
 * Errors grouped by what the caller must do. A code permanently identifies the
 * error; the message may change. Every AWS error is classified here, once, from
 * its `name`, `$fault`, `$retryable` and HTTP status, never from its message.
 */

export type ErrorCode =
  | 'CONFIG_INVALID' // a flag or environment value is not allowed (exit 2)
  | 'CHECKPOINT_MISMATCH' // an unfinished snapshot has another configuration (exit 2)
  | 'CHECKPOINT_CORRUPT' // checkpoint.json cannot be read or trusted (exit 1)
  | 'PAGINATION_TOKEN_INVALID' // a StartingToken that this program did not produce
  | 'SOURCE_CREDENTIALS' // credentials missing or rejected (exit 1)
  | 'SOURCE_DENIED' // ListUsers denied (exit 1)
  | 'SOURCE_UNREACHABLE' // endpoint unreachable after retries (exit 1)
  | 'SOURCE_FAILED' // any other fatal answer from IAM (exit 1)
  | 'OUTPUT_IO' // --out not writable, disk full, ... (exit 1)
  | 'SNAPSHOT_PUBLISHED' // a snapshot id already published (exit 1)
  | 'OUTPUT_LOCKED' // another run is exporting into the same --out (exit 1)
  | 'INTERNAL'; // a bug (exit 1)

export interface ErrorContext {
  readonly flag?: string;
  readonly user?: string;
  readonly file?: string;
  readonly awsCode?: string;
}

export class ExportError extends Error {
  override readonly name = 'ExportError';
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.context = context;
  }
}

/** Exit codes of DESIGN §4. */
export const EXIT = {
  PUBLISHED: 0,
  FATAL: 1,
  USAGE: 2,
  USER_ERRORS: 3,
  STOPPED: 75,
} as const;

/** The exit code an error ends the process with. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof ExportError && (err.code === 'CONFIG_INVALID' || err.code === 'CHECKPOINT_MISMATCH')) return EXIT.USAGE;
  return EXIT.FATAL;
}

/** What the caller must do with an AWS error raised while paging one user's keys. */
export type UserErrorAction =
  | { readonly kind: 'vanished' } // NoSuchEntity: deleted since ListUsers; count it, go on
  | { readonly kind: 'user-failed'; readonly code: string } // record it, go on, exit 3 at the end
  | { readonly kind: 'fatal'; readonly error: ExportError }; // stop the run, exit 1

/** Shape of the errors the SDK throws (ServiceException and network errors). */
interface AwsLikeError {
  name?: unknown;
  code?: unknown;
  $fault?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

const CREDENTIAL_ERRORS = new Set([
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'ExpiredTokenException',
  'InvalidAccessKeyId',
  'CredentialsProviderError',
  'AuthFailure',
  'MissingAuthenticationToken',
  'IncompleteSignature',
]);

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'TimeoutError', 'RequestTimeout']);

const THROTTLING_ERRORS = new Set(['Throttling', 'ThrottlingException', 'ThrottledException', 'RequestThrottled', 'RequestThrottledException', 'TooManyRequestsException', 'RequestLimitExceeded', 'SlowDown']);

/** True for an answer that means "slow down" (IAM: HTTP 400 Throttling), from its name, status or $retryable. */
export function isThrottle(err: unknown): boolean {
  const e = (err ?? {}) as AwsLikeError & { $retryable?: { throttling?: unknown } };
  return THROTTLING_ERRORS.has(awsErrorName(err)) || httpStatus(err) === 429 || e.$retryable?.throttling === true;
}

/** The error's name/code as the SDK reports it (ServiceException name, or Node's errno code). */
export function awsErrorName(err: unknown): string {
  const e = (err ?? {}) as AwsLikeError;
  if (typeof e.name === 'string' && e.name !== 'Error') return e.name;
  if (typeof e.code === 'string') return e.code;
  return typeof e.name === 'string' ? e.name : 'UnknownError';
}

function httpStatus(err: unknown): number | undefined {
  const s = ((err ?? {}) as AwsLikeError).$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

/**
 * Classifies an error that survived the SDK's retries, for a call that is not tied
 * to one user (ListUsers, or anything that must stop the run). Always fatal; the
 * code says which cause, so the operator line can say what to do.
 */
export function classifyFatal(err: unknown, what: string): ExportError {
  if (err instanceof ExportError) return err;
  const name = awsErrorName(err);
  if (CREDENTIAL_ERRORS.has(name)) {
    return new ExportError('SOURCE_CREDENTIALS', `${what}: credentials rejected or missing (${name}); check AWS_PROFILE / --profile or the AWS_* environment`, { awsCode: name }, { cause: err });
  }
  if (name === 'AccessDenied' || name === 'AccessDeniedException' || httpStatus(err) === 403) {
    return new ExportError('SOURCE_DENIED', `${what}: access denied (${name}); the identity needs iam:ListUsers and iam:ListAccessKeys`, { awsCode: name }, { cause: err });
  }
  if (NETWORK_ERRORS.has(name) || (httpStatus(err) === undefined && !isServiceError(err))) {
    return new ExportError('SOURCE_UNREACHABLE', `${what}: IAM endpoint unreachable after retries (${name}); check --endpoint-url / AWS_ENDPOINT_URL_IAM and the network`, { awsCode: name }, { cause: err });
  }
  return new ExportError('SOURCE_FAILED', `${what}: IAM answered ${name} after retries`, { awsCode: name }, { cause: err });
}

function isServiceError(err: unknown): boolean {
  const e = (err ?? {}) as AwsLikeError;
  return e.$fault === 'client' || e.$fault === 'server';
}

/**
 * Classifies an error from ListAccessKeys for one user, after the SDK's retries:
 * NoSuchEntity means the user vanished; credential and connectivity problems stop
 * the whole run (every other user would fail the same way); any other answer from
 * IAM (AccessDenied, a 5xx that outlived the retries, ...) fails this user only.
 */
export function classifyUserError(err: unknown, user: string): UserErrorAction {
  const name = awsErrorName(err);
  if (name === 'NoSuchEntity' || name === 'NoSuchEntityException') return { kind: 'vanished' };
  if (err instanceof ExportError) return { kind: 'fatal', error: err };
  if (CREDENTIAL_ERRORS.has(name) || !isServiceError(err)) {
    return { kind: 'fatal', error: classifyFatal(err, `ListAccessKeys for user ${user}`) };
  }
  return { kind: 'user-failed', code: name };
}

/** One line for the operator: the message, plus the cause's stack only with --debug. */
export function describeError(err: unknown, debug: boolean): string {
  if (debug) return err instanceof Error ? (err.stack ?? String(err)) + causeStack(err) : String(err);
  if (err instanceof ExportError) return err.message;
  if (err instanceof Error) return `internal error: ${err.message}`;
  return `internal error: ${String(err)}`;
}

function causeStack(err: Error): string {
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `\nCaused by: ${cause.stack ?? cause.message}` : '';
}
