/**
 * Renders answers as Query-protocol XML (IAM's, and the shared helpers STS
 * uses). Element names and nesting copy the services' responses; every value
 * goes through `escapeXml`, including values echoed from the request, which
 * can hold anything.
 */
import type { ActionResult } from './actions.ts';
import { XML_NAMESPACE } from './catalog.ts';
import type { FakeKey, FakeUser } from './data.ts';
import type { IamError } from './errors.ts';
import type { Page } from './paging.ts';

export const IAM_XMLNS = XML_NAMESPACE.iam;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;', '\r': '&#xD;' };

/**
 * Escapes text for element content. Characters XML 1.0 cannot carry at all
 * (most C0 controls, lone surrogates, U+FFFE/U+FFFF) become U+FFFD; a CR is
 * written as a reference because parsers turn a literal one into LF.
 */
export function escapeXml(value: string): string {
  return value
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
    .replace(/[&<>"'\r]/g, (c) => ESCAPES[c] ?? c);
}

/** IAM's timestamp form: ISO 8601 UTC without milliseconds. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** An element around already-rendered children. */
export const el = (name: string, ...children: string[]): string => `<${name}>${children.join('')}</${name}>`;
/** An element holding escaped text. */
export const text = (name: string, value: string): string => el(name, escapeXml(value));
const members = <T>(name: string, items: readonly T[], render: (item: T) => string): string =>
  el(name, ...items.map((item) => el('member', render(item))));

/** A Query-protocol success answer: `<ActionResponse><ActionResult>…` plus the request id. */
export function queryResponse(namespace: string, action: string, result: string, requestId: string): string {
  return (
    `<${action}Response xmlns="${namespace}">` +
    el(`${action}Result`, result) +
    el('ResponseMetadata', text('RequestId', requestId)) +
    `</${action}Response>`
  );
}

const response = (action: string, result: string, requestId: string): string => queryResponse(IAM_XMLNS, action, result, requestId);

function paging(page: Page<unknown>): string {
  return text('IsTruncated', String(page.isTruncated)) + (page.marker === undefined ? '' : text('Marker', page.marker));
}

const user = (u: FakeUser): string =>
  text('Path', u.path) + text('UserName', u.userName) + text('UserId', u.userId) + text('Arn', u.arn) + text('CreateDate', isoSeconds(u.createDate));

const keyMetadata = (k: FakeKey): string =>
  text('UserName', k.userName) + text('AccessKeyId', k.accessKeyId) + text('Status', k.status) + text('CreateDate', isoSeconds(k.createDate));

function lastUsed(k: FakeKey): string {
  // A key never used has no date and N/A for service and region, as in IAM.
  const used = k.lastUsed;
  return el(
    'AccessKeyLastUsed',
    used ? text('LastUsedDate', isoSeconds(used.date)) : '',
    text('ServiceName', used?.service ?? 'N/A'),
    text('Region', used?.region ?? 'N/A'),
  );
}

/** The XML body of a successful answer. */
export function renderResult(result: ActionResult, requestId: string): string {
  switch (result.action) {
    case 'ListUsers':
      return response('ListUsers', paging(result.page) + members('Users', result.page.items, user), requestId);
    case 'ListAccessKeys':
      return response('ListAccessKeys', members('AccessKeyMetadata', result.page.items, keyMetadata) + paging(result.page), requestId);
    case 'GetAccessKeyLastUsed':
      return response('GetAccessKeyLastUsed', text('UserName', result.key.userName) + lastUsed(result.key), requestId);
    case 'GenerateCredentialReport':
      return response('GenerateCredentialReport', text('State', result.answer.state) + text('Description', result.answer.description), requestId);
    case 'GetAccountSummary':
      return response('GetAccountSummary', el('SummaryMap', ...[...result.summary].map(([key, value]) => el('entry', text('key', key), text('value', String(value))))), requestId);
    case 'ListAccountAliases':
      return response('ListAccountAliases', el('AccountAliases', ...result.aliases.map((alias) => text('member', alias))) + text('IsTruncated', 'false'), requestId);
    case 'GetCredentialReport': {
      const { report } = result;
      const content = Buffer.from(report.csv, 'utf8').toString('base64');
      return response('GetCredentialReport', text('Content', content) + text('ReportFormat', 'text/csv') + text('GeneratedTime', isoSeconds(report.generatedTime)), requestId);
    }
  }
}

/** The XML body of an error answer in `namespace` (IAM's by default); the HTTP status comes from `error.status`. */
export function renderError(error: IamError, requestId: string, namespace: string = IAM_XMLNS): string {
  return (
    `<ErrorResponse xmlns="${namespace}">` +
    el('Error', text('Type', error.type), text('Code', error.code), text('Message', error.message)) +
    text('RequestId', requestId) +
    '</ErrorResponse>'
  );
}
