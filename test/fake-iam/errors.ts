/**
 * The IAM errors the fake answers with. Status and fault type follow what IAM
 * sends for each code, so the SDK classifies them as it would in production.
 */

export type IamErrorCode =
  | 'ValidationError'
  | 'InvalidAction'
  | 'NoSuchEntity'
  | 'AccessDenied'
  | 'InvalidClientTokenId'
  | 'Throttling'
  | 'ServiceFailure'
  | 'ReportNotPresent'
  | 'ReportInProgress'
  | 'ReportExpired'
  | 'LimitExceeded'
  | 'ExpiredToken'
  | 'AWSOrganizationsNotInUseException'
  | 'InvalidInputException'
  | 'UnknownOperationException';

/** `Sender` errors are the caller's fault (4xx); `Receiver` errors are IAM's (5xx). */
export type IamFaultType = 'Sender' | 'Receiver';

const SHAPE: Record<IamErrorCode, { readonly status: number; readonly type: IamFaultType }> = {
  ValidationError: { status: 400, type: 'Sender' },
  InvalidAction: { status: 400, type: 'Sender' },
  NoSuchEntity: { status: 404, type: 'Sender' },
  AccessDenied: { status: 403, type: 'Sender' },
  InvalidClientTokenId: { status: 403, type: 'Sender' },
  // IAM throttles with 400, not 429; the SDK recognises it by its code.
  Throttling: { status: 400, type: 'Sender' },
  ServiceFailure: { status: 500, type: 'Receiver' },
  // The credential report's codes and statuses, as the SDK's IAM model has them.
  ReportNotPresent: { status: 410, type: 'Sender' },
  ReportInProgress: { status: 404, type: 'Sender' },
  ReportExpired: { status: 410, type: 'Sender' },
  LimitExceeded: { status: 409, type: 'Sender' },
  // Temporary credentials past their Expiration.
  ExpiredToken: { status: 403, type: 'Sender' },
  // Organizations' own codes (JSON protocol), statuses as its SDK model has them.
  AWSOrganizationsNotInUseException: { status: 404, type: 'Sender' },
  InvalidInputException: { status: 400, type: 'Sender' },
  UnknownOperationException: { status: 400, type: 'Sender' },
};

/** An error answer: thrown by the action handlers, rendered by the server. */
export class IamError extends Error {
  override readonly name = 'IamError';
  readonly code: IamErrorCode;
  readonly status: number;
  readonly type: IamFaultType;

  constructor(code: IamErrorCode, message: string) {
    super(message);
    this.code = code;
    this.status = SHAPE[code].status;
    this.type = SHAPE[code].type;
  }
}

/** The answer to a request over a server-side rate limit or an injected throttle. */
export const throttling = (): IamError => new IamError('Throttling', 'Rate exceeded');

/** The answer IAM gives on an internal failure. */
export const serviceFailure = (): IamError =>
  new IamError('ServiceFailure', 'The request processing has failed because of an unknown error, exception or failure.');

/** The answer to a request signed with credentials IAM does not know. */
export const invalidClientTokenId = (): IamError =>
  new IamError('InvalidClientTokenId', 'The security token included in the request is invalid.');

/** IAM's AccessDenied wording, naming the caller, the action (of `service`, default iam) and the resource. */
export function accessDenied(callerArn: string, action: string, resourceArn: string, service = 'iam'): IamError {
  return new IamError(
    'AccessDenied',
    `User: ${callerArn} is not authorized to perform: ${service}:${action} on resource: ${resourceArn} because no identity-based policy allows the ${service}:${action} action`,
  );
}

/** The answer to temporary credentials past their Expiration. */
export const expiredToken = (): IamError => new IamError('ExpiredToken', 'The security token included in the request is expired');
