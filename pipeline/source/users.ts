/** From ListUsers' `User` to the UserRef every record carries. */
import type { User } from '@aws-sdk/client-iam';
import { ExportError } from '../errors.ts';
import type { UserRef } from '../items.ts';

/** The account id of an IAM ARN (`arn:<partition>:iam::<account>:user/...`), or of any service's ARN with 'any'. */
export function accountIdFromArn(arn: string, service: 'iam' | 'any' = 'iam'): string | undefined {
  const parts = arn.split(':');
  const account = parts[4];
  return parts[0] === 'arn' && (service === 'any' || parts[2] === 'iam') && account !== undefined && /^\d{12}$/.test(account) ? account : undefined;
}

/** A UserRef from a ListUsers entry; a user without name, id or a parsable ARN is a broken answer. */
export function toUserRef(user: User): UserRef {
  const accountId = user.Arn ? accountIdFromArn(user.Arn) : undefined;
  if (!user.UserName || !user.UserId || !accountId) {
    throw new ExportError('SOURCE_FAILED', `ListUsers returned a user without UserName, UserId or an IAM ARN with a 12-digit account (${JSON.stringify(user.UserName ?? user.Arn ?? null)})`);
  }
  return {
    userName: user.UserName,
    userId: user.UserId,
    accountId,
    arn: user.Arn!,
    path: user.Path ?? '/',
    createDate: user.CreateDate instanceof Date && !Number.isNaN(user.CreateDate.getTime()) ? user.CreateDate.toISOString() : null,
  };
}
