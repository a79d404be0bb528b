/**
 * Errors grouped by what the caller must do. A code permanently identifies the
 * error; the message may change. Every AWS error is classified here, once, from
 * its `name`, `$fault`, `$retryable` and HTTP status, never from its message.
 */

export type ErrorCode =
  | 'CONFIG_INVALID' // a flag or environment value is not allowed (exit 2)
  | 'CHECKPOINT_MISMATCH' // an unfinished snapshot has another configuration, account or format (exit 2)
  | 'CHECKPOINT_CORRUPT' // checkpoint.json or a staged part cannot be read or trusted (exit 1)
  | 'PAGINATION_TOKEN_INVALID' // a StartingToken that this program did not produce
  | 'SOURCE_CREDENTIALS' // credentials missing or rejected (exit 1)
  | 'SOURCE_DENIED' // a permission is missing: ListUsers denied, or every user denied (exit 1)
  | 'SOURCE_UNREACHABLE' // endpoint unreachable after retries (exit 1)
  | 'SOURCE_FAILED' // any other fatal answer from AWS (exit 1)
  | 'OUTPUT_IO' // --out not writable, disk full, S3 failing, ... (exit 1)
  | 'OUTPUT_DENIED' // S3 refused a call on --out: a missing s3:* permission, or a KMS key the caller cannot use (exit 1)
  | 'OUTPUT_NOT_FOUND' // the bucket of --out does not exist (exit 1)
  | 'SNAPSHOT_PUBLISHED' // a snapshot id already published (exit 1)
  | 'OUTPUT_LOCKED' // another run holds the lease of this --out: temporary, rerun later (exit 75)
  | 'LEASE_LOST' // this run's lease was taken over or could not be renewed (exit 1)
  | 'STOPPED' // asked to stop (signal, time budget) before a snapshot was under way (exit 75)
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
  if (!(err instanceof ExportError)) return EXIT.FATAL;
  if (err.code === 'CONFIG_INVALID' || err.code === 'CHECKPOINT_MISMATCH') return EXIT.USAGE;
  // sysexits EX_TEMPFAIL: another run is at work; a later rerun proceeds.
  if (err.code === 'OUTPUT_LOCKED' || err.code === 'STOPPED') return EXIT.STOPPED;
  return EXIT.FATAL;
}

/** What the caller must do with an AWS error raised while paging one user's keys. */
export type UserErrorAction =
  | { readonly kind: 'missing' } // NoSuchEntity: deleted or renamed since ListUsers; a scan decides which
  | { readonly kind: 'throttled' } // throttling outlived the retries: stop resumably (exit 75)
  | { readonly kind: 'user-failed'; readonly code: string } // record it, go on, exit 3 at the end
  | { readonly kind: 'fatal'; readonly error: ExportError }; // stop the run, exit 1

/** Shape of the errors the SDK throws (ServiceException and network errors). */
interface AwsLikeError {
  name?: unknown;
  code?: unknown;
  hostname?: unknown;
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
  'InvalidToken',
]);

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED', 'TimeoutError', 'RequestTimeout']);

const THROTTLING_ERRORS = new Set(['Throttling', 'ThrottlingException', 'ThrottledException', 'RequestThrottled', 'RequestThrottledException', 'TooManyRequestsException', 'RequestLimitExceeded', 'SlowDown']);

const DENIED_ERRORS = new Set(['AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation']);

/** True for an answer that means "slow down" (IAM: HTTP 400 Throttling), from its name, status or $retryable. */
export function isThrottle(err: unknown): boolean {
  const e = (err ?? {}) as AwsLikeError & { $retryable?: { throttling?: unknown } };
  return THROTTLING_ERRORS.has(awsErrorName(err)) || httpStatus(err) === 429 || e.$retryable?.throttling === true;
}

/** True for an answer that means "not allowed" (403 AccessDenied and its kin). */
export function isDenied(err: unknown): boolean {
  return DENIED_ERRORS.has(awsErrorName(err)) || (httpStatus(err) === 403 && !CREDENTIAL_ERRORS.has(awsErrorName(err)));
}

/** The errno-style code of a network failure (also inside an AggregateError), or undefined. */
function networkCode(err: unknown): string | undefined {
  const e = (err ?? {}) as AwsLikeError & { errors?: unknown };
  if (typeof e.code === 'string' && NETWORK_ERRORS.has(e.code)) return e.code;
  if (typeof e.name === 'string' && NETWORK_ERRORS.has(e.name)) return e.name;
  if (Array.isArray(e.errors)) for (const inner of e.errors) if (networkCode(inner)) return networkCode(inner);
  return undefined;
}

/** The error's name/code as the SDK reports it (ServiceException name, or Node's errno code). */
export function awsErrorName(err: unknown): string {
  const e = (err ?? {}) as AwsLikeError;
  const net = networkCode(err);
  if (net) return net;
  if (typeof e.name === 'string' && e.name !== 'Error') return e.name;
  if (typeof e.code === 'string') return e.code;
  return typeof e.name === 'string' ? e.name : 'UnknownError';
}

/** The HTTP status of an AWS answer, or undefined (no answer, or not an AWS error). */
export function httpStatus(err: unknown): number | undefined {
  const s = ((err ?? {}) as AwsLikeError).$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

/** True for an error that came from an AWS answer (it has a fault or an HTTP status). */
export function isServiceError(err: unknown): boolean {
  const e = (err ?? {}) as AwsLikeError;
  return e.$fault === 'client' || e.$fault === 'server' || httpStatus(err) !== undefined;
}

/** Where a failing call went, for the operator line. */
export interface CallSite {
  /** The call, e.g. "ListUsers" or "ListAccessKeys for user alice". */
  readonly what: string;
  /** The service, e.g. "IAM", and the endpoint URL tried. */
  readonly service: string;
  readonly endpoint: string;
  /** The permission the call needs, e.g. "iam:ListUsers". */
  readonly permission: string;
}

/**
 * Classifies an error that survived the SDK's retries, for a call that is not tied
 * to one user (ListUsers, GetCallerIdentity, or anything that must stop the run).
 * The code says which cause, so the operator line can say what to do; an error
 * that is not from AWS at all is our bug (INTERNAL).
 */
export function classifyFatal(err: unknown, site: CallSite): ExportError {
  if (err instanceof ExportError) return err;
  const name = awsErrorName(err);
  if (CREDENTIAL_ERRORS.has(name)) {
    return new ExportError('SOURCE_CREDENTIALS', `${site.what}: credentials rejected or missing (${name}); check AWS_PROFILE / --profile or the AWS_* environment`, { awsCode: name }, { cause: err });
  }
  if (isDenied(err)) {
    return new ExportError('SOURCE_DENIED', `${site.what}: access denied (${name}); the identity needs ${site.permission}`, { awsCode: name }, { cause: err });
  }
  const net = networkCode(err);
  if (net) {
    const host = (err as AwsLikeError).hostname;
    const detail = net === 'ENOTFOUND' || net === 'EAI_AGAIN' ? `${net}: host ${typeof host === 'string' ? host : hostOf(site.endpoint)} not found` : net;
    return new ExportError('SOURCE_UNREACHABLE', `${site.what}: ${site.service} endpoint ${site.endpoint} unreachable after retries (${detail}); check the endpoint settings and the network`, { awsCode: net }, { cause: err });
  }
  if (isServiceError(err)) return new ExportError('SOURCE_FAILED', `${site.what}: ${site.service} answered ${name} after retries`, { awsCode: name }, { cause: err });
  return new ExportError('INTERNAL', `internal error during ${site.what}: ${err instanceof Error ? err.message : String(err)} (rerun with --debug for the stack)`, {}, { cause: err });
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return url;
  }
}

/**
 * Classifies an error from ListAccessKeys for one user, after the SDK's retries:
 * NoSuchEntity means the user is missing (deleted or renamed); throttling stops
 * the run resumably; credential, connectivity and non-AWS problems stop the whole
 * run (every other user would fail the same way); any other answer from IAM
 * (AccessDenied, a 5xx that outlived the retries, ...) fails this user only.
 */
export function classifyUserError(err: unknown, site: CallSite): UserErrorAction {
  if (err instanceof ExportError) return { kind: 'fatal', error: err };
  const name = awsErrorName(err);
  if (name === 'NoSuchEntity' || name === 'NoSuchEntityException') return { kind: 'missing' };
  if (isThrottle(err)) return { kind: 'throttled' };
  if (CREDENTIAL_ERRORS.has(name) || !isServiceError(err)) return { kind: 'fatal', error: classifyFatal(err, site) };
  return { kind: 'user-failed', code: name };
}

/** Where a failing S3 call of the store went, for the operator line. */
export interface StoreCallSite {
  /** The call and the object, e.g. "PutObject s3://bucket/prefix/_staging/…/lease.json". */
  readonly what: string;
  readonly bucket: string;
  /** The S3 permission the call needs and the resource it applies to, e.g. "s3:PutObject on arn:aws:s3:::bucket/prefix/*". */
  readonly permission: string;
  /** With SSE-KMS (or for a read of KMS-encrypted objects): the KMS permission and key, e.g. "kms:GenerateDataKey on key alias/x". */
  readonly kms?: string;
  /** The S3 endpoint, for messages. */
  readonly endpoint: string;
}

/**
 * Classifies an error of an S3 call of the store, after the SDK's retries. Decided
 * on `name` and HTTP status only:
 *   NoSuchBucket                      OUTPUT_NOT_FOUND, naming the bucket
 *   KMS.* (a key missing, disabled,   OUTPUT_DENIED, naming the key and kms:GenerateDataKey / kms:Decrypt
 *   in another region, not allowed)
 *   AccessDenied and other 403s       OUTPUT_DENIED, naming the S3 permission (and the KMS one with --sse aws:kms:
 *                                     S3 answers AccessDenied for a KMS key the caller may not use too)
 *   SlowDown / throttling             STOPPED (exit 75): S3 asked to slow down beyond the retries; rerun later
 *   credentials, non-AWS errors       as classifyFatal (SOURCE_CREDENTIALS: the same credentials; INTERNAL)
 *   network (after retries)           OUTPUT_IO with classifyFatal's line (endpoint and host named)
 *   any other S3 answer               OUTPUT_IO
 */
export function classifyStoreError(err: unknown, site: StoreCallSite): ExportError {
  if (err instanceof ExportError) return err;
  const name = awsErrorName(err);
  const status = httpStatus(err);
  const context = { file: site.what.slice(site.what.indexOf(' ') + 1), awsCode: name };
  if (name === 'NoSuchBucket') {
    return new ExportError('OUTPUT_NOT_FOUND', `${site.what}: bucket ${site.bucket} does not exist (NoSuchBucket); create it, or fix --out`, context, { cause: err });
  }
  if (name.startsWith('KMS.')) {
    return new ExportError(
      'OUTPUT_DENIED',
      `${site.what}: the KMS key cannot be used (${name}); the identity needs ${site.kms ?? 'kms:GenerateDataKey and kms:Decrypt on the bucket\'s key'}, and the key must exist, be enabled and be in the bucket's region`,
      context,
      { cause: err },
    );
  }
  if (CREDENTIAL_ERRORS.has(name)) return classifyFatal(err, { what: site.what, service: 'S3', endpoint: site.endpoint, permission: site.permission });
  if (isDenied(err)) {
    return new ExportError('OUTPUT_DENIED', `${site.what}: access denied (${name}); the identity needs ${site.permission}${site.kms ? ` and ${site.kms}` : ''}`, context, { cause: err });
  }
  if (isThrottle(err) || (status === 503 && isServiceError(err))) {
    return new ExportError('STOPPED', `${site.what}: S3 kept asking to slow down (${name}) beyond the retries; this is temporary: rerun later to resume`, context, { cause: err });
  }
  if (isServiceError(err)) {
    return new ExportError('OUTPUT_IO', `${site.what}: S3 answered ${name}${status ? ` (HTTP ${status})` : ''} after retries`, context, { cause: err });
  }
  const fatal = classifyFatal(err, { what: site.what, service: 'S3', endpoint: site.endpoint, permission: site.permission });
  // The output, not the source, is out of reach: same line, the output's code.
  return fatal.code === 'SOURCE_UNREACHABLE' ? new ExportError('OUTPUT_IO', fatal.message, context, { cause: err }) : fatal;
}

/** One line for the operator: the message, plus the stack only with --debug. */
export function describeError(err: unknown, debug: boolean): string {
  if (debug) return err instanceof Error ? (err.stack ?? String(err)) + causeStack(err) : String(err);
  if (err instanceof ExportError) return err.message;
  if (err instanceof Error) return `internal error: ${err.message} (rerun with --debug for the stack)`;
  return `internal error: ${String(err)} (rerun with --debug for the stack)`;
}

function causeStack(err: Error): string {
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `\nCaused by: ${cause.stack ?? cause.message}` : '';
}

/**
 * True for an answer that can mean "this Marker is no longer valid": a request
 * error (HTTP 400, not throttling, credentials, a denial or NoSuchEntity), such as
 * IAM's ValidationError for an expired or foreign Marker. Only meaningful for a
 * request that carried a Marker; the caller then restarts that listing once.
 */
export function isRejectedMarker(err: unknown): boolean {
  if (!isServiceError(err) || isThrottle(err) || isDenied(err)) return false;
  const name = awsErrorName(err);
  if (CREDENTIAL_ERRORS.has(name) || name === 'NoSuchEntity' || name === 'NoSuchEntityException') return false;
  return httpStatus(err) === 400 || (httpStatus(err) === undefined && (err as AwsLikeError).$fault === 'client');
}

/**
 * Waits for all of `work` to end, then throws the first failure, if any. Unlike
 * Promise.all, nothing is still writing once it throws: the caller's next step
 * (a lease released, a run ended with its exit code) never races what was started.
 */
export async function settleAll(work: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
