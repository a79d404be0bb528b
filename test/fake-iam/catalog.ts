/**
 * Every action the fake answers, whatever the service, with the service that
 * owns it. Stats count calls by these names, so a new action appears in
 * `stats().calls` by being listed here.
 */

export type Service = 'iam' | 'sts' | 'organizations';
/** Services that speak the Query protocol (form parameters in, XML out). */
export type QueryService = Exclude<Service, 'organizations'>;

/**
 * Action → service. Query-protocol actions are found by their `Action`
 * parameter; Organizations' (JSON protocol) by `X-Amz-Target`.
 */
export const SERVICE_OF = {
  ListUsers: 'iam',
  ListAccessKeys: 'iam',
  GetAccessKeyLastUsed: 'iam',
  GenerateCredentialReport: 'iam',
  GetCredentialReport: 'iam',
  GetAccountSummary: 'iam',
  ListAccountAliases: 'iam',
  GetCallerIdentity: 'sts',
  AssumeRole: 'sts',
  ListAccounts: 'organizations',
  DescribeOrganization: 'organizations',
} as const satisfies Record<string, Service>;

export type Action = keyof typeof SERVICE_OF;

/** Every action, in a fixed order (the order of `stats().calls`). */
export const ACTIONS = Object.keys(SERVICE_OF) as Action[];

/** Narrows a name to an action the fake implements. */
export function isAction(name: string | null | undefined): name is Action {
  return typeof name === 'string' && Object.hasOwn(SERVICE_OF, name);
}

/** The XML namespace of each Query-protocol service's answers. */
export const XML_NAMESPACE: Readonly<Record<QueryService, string>> = {
  iam: 'https://iam.amazonaws.com/doc/2010-05-08/',
  sts: 'https://sts.amazonaws.com/doc/2011-06-15/',
};

/** Each Query-protocol service's API version, named in InvalidAction messages. */
export const API_VERSION: Readonly<Record<QueryService, string>> = {
  iam: '2010-05-08',
  sts: '2011-06-15',
};

/** The `X-Amz-Target` prefix of Organizations' JSON protocol. */
export const ORGANIZATIONS_TARGET = 'AWSOrganizationsV20161128.';
