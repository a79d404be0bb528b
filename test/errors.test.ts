import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  awsErrorName,
  classifyFatal,
  classifyStoreError,
  classifyUserError,
  describeError,
  exitCodeOf,
  ExportError,
  isDenied,
  isRejectedMarker,
  isServiceError,
  isThrottle,
  type ErrorCode,
  type StoreCallSite,
} from '../pipeline/errors.ts';

const site = { what: 'ListUsers', service: 'IAM', endpoint: 'https://iam.example.test:8443/', permission: 'iam:ListUsers' };

/** An error shaped like the SDK's ServiceException. */
function aws(name: string, status?: number, fault: 'client' | 'server' | undefined = status === undefined ? undefined : status >= 500 ? 'server' : 'client', extra: object = {}): Error {
  return Object.assign(new Error(`message of ${name} (never read)`), { name, ...(fault ? { $fault: fault } : {}), ...(status === undefined ? {} : { $metadata: { httpStatusCode: status } }), ...extra });
}

/** A Node network error (errno style). */
function net(code: string, extra: object = {}): Error {
  return Object.assign(new Error(`connect ${code}`), { code, ...extra });
}

const CREDENTIALS = ['InvalidClientTokenId', 'UnrecognizedClientException', 'SignatureDoesNotMatch', 'ExpiredToken', 'ExpiredTokenException', 'InvalidAccessKeyId', 'CredentialsProviderError', 'AuthFailure', 'MissingAuthenticationToken', 'IncompleteSignature', 'InvalidToken'];
const NETWORK = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED', 'TimeoutError', 'RequestTimeout'];
const THROTTLING = ['Throttling', 'ThrottlingException', 'ThrottledException', 'RequestThrottled', 'RequestThrottledException', 'TooManyRequestsException', 'RequestLimitExceeded', 'SlowDown'];
const DENIED = ['AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation'];

test('exit codes: usage errors 2, "another run is at work" and stops 75, everything else 1', () => {
  const expected: Record<ErrorCode, number> = {
    CONFIG_INVALID: 2,
    CHECKPOINT_MISMATCH: 2,
    OUTPUT_LOCKED: 75,
    OUTPUT_DENIED: 1,
    OUTPUT_NOT_FOUND: 1,
    STOPPED: 75,
    CHECKPOINT_CORRUPT: 1,
    PAGINATION_TOKEN_INVALID: 1,
    SOURCE_CREDENTIALS: 1,
    SOURCE_DENIED: 1,
    SOURCE_UNREACHABLE: 1,
    SOURCE_FAILED: 1,
    OUTPUT_IO: 1,
    SNAPSHOT_PUBLISHED: 1,
    LEASE_LOST: 1,
    INTERNAL: 1,
  };
  for (const [code, exit] of Object.entries(expected)) assert.equal(exitCodeOf(new ExportError(code as ErrorCode, 'x')), exit, code);
  assert.equal(exitCodeOf(new Error('a bug')), 1);
  assert.equal(exitCodeOf(Object.assign(new Error('from a library'), { code: 'CONFIG_INVALID' })), 1, 'only our own errors choose the exit code');
  assert.equal(exitCodeOf(Object.assign(new Error('from a library'), { code: 'STOPPED' })), 1);
  assert.equal(exitCodeOf('not even an error'), 1);
});

test('an ExportError carries its code, context and cause, and is named ExportError', () => {
  const cause = new Error('under');
  const e = new ExportError('OUTPUT_IO', 'cannot write', { file: '/x' }, { cause });
  assert.equal(e.name, 'ExportError');
  assert.equal(e.code, 'OUTPUT_IO');
  assert.deepEqual(e.context, { file: '/x' });
  assert.equal(e.cause, cause);
  assert.deepEqual(new ExportError('INTERNAL', 'x').context, {});
});

test('every throttling answer is throttling: by name, by HTTP 429, or by the SDK marking it retryable as throttling', () => {
  for (const name of THROTTLING) assert.equal(isThrottle(aws(name, 400)), true, name);
  assert.equal(isThrottle(aws('Whatever', 429)), true, 'HTTP 429');
  assert.equal(isThrottle(aws('Whatever', 400, 'client', { $retryable: { throttling: true } })), true, '$retryable.throttling');
  assert.equal(isThrottle(aws('Whatever', 400, 'client', { $retryable: { throttling: false } })), false);
  assert.equal(isThrottle(aws('Whatever', 400, 'client', { $retryable: {} })), false);
  for (const other of [aws('AccessDenied', 403), aws('ServiceFailure', 500), net('ECONNRESET'), undefined, null]) assert.equal(isThrottle(other), false, String(other));
});

test('a denial is denied by name, or by HTTP 403 unless the 403 is about credentials', () => {
  for (const name of DENIED) assert.equal(isDenied(aws(name, 400)), true, name);
  assert.equal(isDenied(aws('SomethingForbidden', 403)), true);
  for (const name of CREDENTIALS) assert.equal(isDenied(aws(name, 403)), false, `${name} with 403 is a credentials problem`);
  assert.equal(isDenied(aws('Throttling', 400)), false);
  assert.equal(isDenied(null), false);
});

test("an error's name: a network code first (also inside an AggregateError), then its name, then its code", () => {
  for (const code of NETWORK) assert.equal(awsErrorName(net(code)), code, code);
  assert.equal(awsErrorName(Object.assign(new Error('t'), { name: 'TimeoutError' })), 'TimeoutError', 'a network name');
  assert.equal(awsErrorName(new AggregateError([new Error('first'), net('ECONNREFUSED')], 'all failed')), 'ECONNREFUSED');
  assert.equal(awsErrorName(new AggregateError([new Error('first')], 'all failed')), 'AggregateError');
  assert.equal(awsErrorName(aws('NoSuchEntity', 404)), 'NoSuchEntity');
  assert.equal(awsErrorName(Object.assign(new Error('x'), { code: 'EACCES' })), 'EACCES', 'a plain Error is known by its code');
  assert.equal(awsErrorName(Object.assign(aws('AccessDenied', 403), { code: 'Other' })), 'AccessDenied', "the SDK's name wins over a code");
  assert.equal(awsErrorName(new Error('x')), 'Error');
  assert.equal(awsErrorName({}), 'UnknownError');
  assert.equal(awsErrorName(undefined), 'UnknownError');
  assert.equal(awsErrorName({ name: 42, code: 43 }), 'UnknownError');
});

test('a service error is one with a fault or an HTTP status', () => {
  assert.equal(isServiceError(aws('X', undefined, 'client')), true);
  assert.equal(isServiceError(aws('X', undefined, 'server')), true);
  assert.equal(isServiceError(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 418 } })), true, 'a status without a fault');
  assert.equal(isServiceError(Object.assign(new Error('x'), { $fault: 'other' })), false);
  assert.equal(isServiceError(Object.assign(new Error('x'), { $metadata: { httpStatusCode: '500' } })), false, 'a status that is not a number');
  assert.equal(isServiceError(new Error('x')), false);
  assert.equal(isServiceError(null), false);
});

test('fatal errors: rejected credentials name the profile and the AWS code', () => {
  for (const name of CREDENTIALS) {
    const err = aws(name, 403);
    const e = classifyFatal(err, site);
    assert.equal(e.code, 'SOURCE_CREDENTIALS', name);
    assert.equal(e.context.awsCode, name);
    assert.equal(e.cause, err);
    assert.ok(e.message.startsWith(`ListUsers: credentials rejected or missing (${name})`), e.message);
    assert.match(e.message, /AWS_PROFILE \/ --profile/);
  }
});

test('fatal errors: a denial names the permission the identity needs', () => {
  const err = aws('AccessDenied', 403);
  const e = classifyFatal(err, site);
  assert.equal(e.code, 'SOURCE_DENIED');
  assert.equal(e.message, 'ListUsers: access denied (AccessDenied); the identity needs iam:ListUsers');
  assert.equal(e.context.awsCode, 'AccessDenied');
  assert.equal(e.cause, err);
});

test('fatal errors: an unreachable endpoint names the endpoint, and for a name lookup the host', () => {
  const refused = classifyFatal(net('ECONNREFUSED'), site);
  assert.equal(refused.code, 'SOURCE_UNREACHABLE');
  assert.equal(refused.message, 'ListUsers: IAM endpoint https://iam.example.test:8443/ unreachable after retries (ECONNREFUSED); check the endpoint settings and the network');
  assert.equal(refused.context.awsCode, 'ECONNREFUSED');
  for (const code of ['ENOTFOUND', 'EAI_AGAIN']) {
    assert.match(classifyFatal(net(code, { hostname: 'iam.typo.test' }), site).message, new RegExp(`\\(${code}: host iam\\.typo\\.test not found\\)`), 'the host the error names');
    assert.match(classifyFatal(net(code), site).message, new RegExp(`\\(${code}: host iam\\.example\\.test not found\\)`), 'else the endpoint host');
    assert.match(classifyFatal(net(code), { ...site, endpoint: 'not a url' }).message, new RegExp(`\\(${code}: host not a url not found\\)`), 'else the endpoint as given');
  }
  const inner = net('ETIMEDOUT');
  assert.equal(classifyFatal(new AggregateError([inner]), site).code, 'SOURCE_UNREACHABLE');
  assert.equal(refused.cause !== undefined, true);
  const reset = net('ECONNRESET');
  assert.equal(classifyFatal(reset, site).cause, reset);
  for (const code of NETWORK) {
    assert.equal(classifyFatal(net(code), site).code, 'SOURCE_UNREACHABLE', `${code} as an errno code`);
    assert.equal(classifyFatal(Object.assign(new Error('t'), { name: code }), site).code, 'SOURCE_UNREACHABLE', `${code} as an error name`);
    const action = classifyUserError(net(code), site);
    assert.equal(action.kind === 'fatal' && action.error.code, 'SOURCE_UNREACHABLE', `${code}: every user would fail the same way`);
  }
  assert.equal(classifyFatal(Object.assign(new Error('x'), { code: 'EACCES' }), site).code, 'INTERNAL', 'an errno code that is not about the network');
});

test('fatal errors: any other AWS answer is SOURCE_FAILED naming it; a non-AWS error is INTERNAL (our bug) pointing at --debug', () => {
  const failed = classifyFatal(aws('ServiceFailure', 500), site);
  assert.equal(failed.code, 'SOURCE_FAILED');
  assert.equal(failed.message, 'ListUsers: IAM answered ServiceFailure after retries');
  assert.equal(failed.context.awsCode, 'ServiceFailure');
  assert.ok(failed.cause instanceof Error && failed.cause.name === 'ServiceFailure');
  const bug = new TypeError('x is undefined');
  const internal = classifyFatal(bug, site);
  assert.equal(internal.code, 'INTERNAL');
  assert.equal(internal.message, 'internal error during ListUsers: x is undefined (rerun with --debug for the stack)');
  assert.equal(internal.cause, bug);
  assert.deepEqual(internal.context, {});
  assert.equal(classifyFatal('a string', site).message, 'internal error during ListUsers: a string (rerun with --debug for the stack)');
  const ours = new ExportError('OUTPUT_IO', 'disk full');
  assert.equal(classifyFatal(ours, site), ours, 'an ExportError is already classified');
});

test('per-user errors: NoSuchEntity is missing, throttling stops resumably, credentials and non-AWS errors stop the run, the rest fail the user', () => {
  assert.deepEqual(classifyUserError(aws('NoSuchEntity', 404), site), { kind: 'missing' });
  assert.deepEqual(classifyUserError(aws('NoSuchEntityException', 404), site), { kind: 'missing' });
  for (const name of THROTTLING) assert.deepEqual(classifyUserError(aws(name, 400), site), { kind: 'throttled' }, name);
  assert.deepEqual(classifyUserError(aws('Whatever', 429), site), { kind: 'throttled' });
  for (const name of CREDENTIALS) {
    const action = classifyUserError(aws(name, 403), site);
    assert.equal(action.kind, 'fatal', name);
    assert.equal(action.kind === 'fatal' && action.error.code, 'SOURCE_CREDENTIALS', name);
  }
  const unreachable = classifyUserError(net('ECONNRESET'), site);
  assert.equal(unreachable.kind === 'fatal' && unreachable.error.code, 'SOURCE_UNREACHABLE');
  const bug = classifyUserError(new TypeError('oops'), site);
  assert.equal(bug.kind === 'fatal' && bug.error.code, 'INTERNAL');
  const ours = new ExportError('LEASE_LOST', 'lost');
  assert.deepEqual(classifyUserError(ours, site), { kind: 'fatal', error: ours });
  assert.deepEqual(classifyUserError(aws('AccessDenied', 403), site), { kind: 'user-failed', code: 'AccessDenied' });
  assert.deepEqual(classifyUserError(aws('ServiceFailure', 500), site), { kind: 'user-failed', code: 'ServiceFailure' }, 'a 5xx that outlived the retries');
});

test('the operator line: the message alone, or an internal error pointing at --debug; --debug shows the stack and its cause', () => {
  assert.equal(describeError(new ExportError('OUTPUT_IO', 'cannot write /x: EACCES'), false), 'cannot write /x: EACCES');
  assert.equal(describeError(new Error('boom'), false), 'internal error: boom (rerun with --debug for the stack)');
  assert.equal(describeError('thrown string', false), 'internal error: thrown string (rerun with --debug for the stack)');
  const cause = new Error('the cause');
  const err = new ExportError('SOURCE_FAILED', 'outer', {}, { cause });
  const debug = describeError(err, true);
  assert.ok(debug.startsWith(err.stack!), 'the stack');
  assert.ok(debug.endsWith(`\nCaused by: ${cause.stack}`), 'then the cause');
  const noStack = Object.assign(new Error('bare', { cause: Object.assign(new Error('inner'), { stack: undefined }) }), { stack: undefined });
  assert.equal(describeError(noStack, true), 'Error: bare\nCaused by: inner');
  const plain = new Error('plain');
  assert.equal(describeError(plain, true), plain.stack, 'no cause: the stack alone');
  const stringCause = new Error('string cause', { cause: 'text' });
  assert.equal(describeError(stringCause, true), stringCause.stack, 'only an Error cause has a stack');
  assert.equal(describeError('thrown string', true), 'thrown string');
});

test('a rejected Marker: a plain request error (HTTP 400, or a client fault without status), never throttling, credentials, denial or NoSuchEntity', () => {
  assert.equal(isRejectedMarker(aws('ValidationError', 400)), true);
  assert.equal(isRejectedMarker(aws('InvalidInput', undefined, 'client')), true);
  assert.equal(isRejectedMarker(aws('ServiceFailure', 500)), false);
  assert.equal(isRejectedMarker(aws('Odd', undefined, 'server')), false);
  assert.equal(isRejectedMarker(aws('Gone', 410, 'client')), false, 'another status');
  for (const name of THROTTLING) assert.equal(isRejectedMarker(aws(name, 400)), false, name);
  for (const name of DENIED) assert.equal(isRejectedMarker(aws(name, 400)), false, name);
  for (const name of CREDENTIALS) assert.equal(isRejectedMarker(aws(name, 400)), false, name);
  for (const name of ['NoSuchEntity', 'NoSuchEntityException']) assert.equal(isRejectedMarker(aws(name, 400)), false, name);
  assert.equal(isRejectedMarker(net('ECONNRESET')), false, 'not an answer at all');
  assert.equal(isRejectedMarker(new Error('x')), false);
});

/** A PutObject of the store with --sse aws:kms; `plain` is the same call without it. */
const store: StoreCallSite = {
  what: 'PutObject s3://b/p/_staging/x/lease.json',
  bucket: 'b',
  permission: 's3:PutObject on arn:aws:s3:::b/p/_staging/x/lease.json',
  kms: 'kms:GenerateDataKey and kms:Decrypt on key alias/k',
  endpoint: 'https://s3.example.test:9000/',
};
const plain: StoreCallSite = { what: store.what, bucket: store.bucket, permission: store.permission, endpoint: store.endpoint };
const object = 's3://b/p/_staging/x/lease.json';

test('S3 store errors: a missing bucket is OUTPUT_NOT_FOUND naming the bucket; the error names the object as its file and keeps the cause', () => {
  const err = aws('NoSuchBucket', 404);
  const e = classifyStoreError(err, store);
  assert.equal(e.code, 'OUTPUT_NOT_FOUND');
  assert.equal(exitCodeOf(e), 1);
  assert.equal(e.message, `PutObject ${object}: bucket b does not exist (NoSuchBucket); create it, or fix --out`);
  assert.deepEqual(e.context, { file: object, awsCode: 'NoSuchBucket' });
  assert.equal(e.cause, err);
});

test('S3 store errors: KMS.* is OUTPUT_DENIED naming the key (or what the bucket key needs); a denial names the S3 permission, and the KMS one with SSE-KMS', () => {
  for (const name of ['KMS.NotFoundException', 'KMS.DisabledException', 'KMS.KMSInvalidStateException']) {
    const err = aws(name, 400);
    const e = classifyStoreError(err, store);
    assert.equal(e.code, 'OUTPUT_DENIED', name);
    assert.equal(e.message, `PutObject ${object}: the KMS key cannot be used (${name}); the identity needs kms:GenerateDataKey and kms:Decrypt on key alias/k, and the key must exist, be enabled and be in the bucket's region`);
    assert.deepEqual(e.context, { file: object, awsCode: name });
    assert.equal(e.cause, err);
  }
  assert.equal(
    classifyStoreError(aws('KMS.AccessDeniedException', 400), plain).message,
    `PutObject ${object}: the KMS key cannot be used (KMS.AccessDeniedException); the identity needs kms:GenerateDataKey and kms:Decrypt on the bucket's key, and the key must exist, be enabled and be in the bucket's region`,
    "a read of an object encrypted with the bucket's key",
  );
  const err = aws('AccessDenied', 403);
  const denied = classifyStoreError(err, store);
  assert.equal(denied.code, 'OUTPUT_DENIED');
  assert.equal(denied.message, `PutObject ${object}: access denied (AccessDenied); the identity needs s3:PutObject on arn:aws:s3:::b/p/_staging/x/lease.json and kms:GenerateDataKey and kms:Decrypt on key alias/k`);
  assert.deepEqual(denied.context, { file: object, awsCode: 'AccessDenied' });
  assert.equal(denied.cause, err);
  assert.equal(classifyStoreError(aws('AccessDenied', 403), plain).message, `PutObject ${object}: access denied (AccessDenied); the identity needs s3:PutObject on arn:aws:s3:::b/p/_staging/x/lease.json`);
  assert.equal(classifyStoreError(aws('AllAccessDisabled', 403), plain).code, 'OUTPUT_DENIED', 'any other 403');
});

test('S3 store errors: SlowDown, throttling and a 503 stop resumably (exit 75); any other answer is OUTPUT_IO naming it and its HTTP status', () => {
  for (const err of [aws('SlowDown', 503), aws('ThrottlingException', 400), aws('Whatever', 429), aws('ServiceUnavailable', 503)]) {
    const e = classifyStoreError(err, store);
    assert.equal(e.code, 'STOPPED', awsErrorName(err));
    assert.equal(exitCodeOf(e), 75, awsErrorName(err));
  }
  const err = aws('SlowDown', 503);
  const slow = classifyStoreError(err, store);
  assert.equal(slow.message, `PutObject ${object}: S3 kept asking to slow down (SlowDown) beyond the retries; this is temporary: rerun later to resume`);
  assert.deepEqual(slow.context, { file: object, awsCode: 'SlowDown' });
  assert.equal(slow.cause, err);
  const answer = aws('InvalidRequest', 400);
  const io = classifyStoreError(answer, store);
  assert.equal(io.code, 'OUTPUT_IO');
  assert.equal(io.message, `PutObject ${object}: S3 answered InvalidRequest (HTTP 400) after retries`);
  assert.deepEqual(io.context, { file: object, awsCode: 'InvalidRequest' });
  assert.equal(io.cause, answer);
  assert.equal(classifyStoreError(aws('InternalError', 500), store).message, `PutObject ${object}: S3 answered InternalError (HTTP 500) after retries`, 'a 5xx that outlived the retries');
  assert.equal(classifyStoreError(aws('Odd', undefined, 'server'), store).message, `PutObject ${object}: S3 answered Odd after retries`, 'a fault without a status');
});

test('S3 store errors: rejected credentials are SOURCE_CREDENTIALS as for IAM; an unreachable endpoint is OUTPUT_IO naming it; a non-AWS error is INTERNAL', () => {
  for (const name of CREDENTIALS) {
    const e = classifyStoreError(aws(name, 403), store);
    assert.equal(e.code, 'SOURCE_CREDENTIALS', name);
    assert.ok(e.message.startsWith(`PutObject ${object}: credentials rejected or missing (${name})`), e.message);
  }
  const err = net('ECONNREFUSED');
  const refused = classifyStoreError(err, store);
  assert.equal(refused.code, 'OUTPUT_IO', 'the output, not the source, is out of reach');
  assert.equal(refused.message, `PutObject ${object}: S3 endpoint https://s3.example.test:9000/ unreachable after retries (ECONNREFUSED); check the endpoint settings and the network`);
  assert.deepEqual(refused.context, { file: object, awsCode: 'ECONNREFUSED' });
  assert.equal(refused.cause, err);
  assert.match(classifyStoreError(net('ENOTFOUND', { hostname: 'b.s3.typo.test' }), store).message, /\(ENOTFOUND: host b\.s3\.typo\.test not found\)/);
  const bug = classifyStoreError(new TypeError('bug'), store);
  assert.equal(bug.code, 'INTERNAL');
  assert.equal(bug.message, `internal error during PutObject ${object}: bug (rerun with --debug for the stack)`);
  const ours = new ExportError('LEASE_LOST', 'lost');
  assert.equal(classifyStoreError(ours, store), ours, 'an ExportError is already classified');
});
