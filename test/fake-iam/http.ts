/**
 * The few HTTP chores the fake's handlers share: reading a bounded body and
 * writing XML, AWS JSON and control-plane JSON answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

const MAX_BODY_BYTES = 1 << 20;

/** The request body, or undefined (socket destroyed) when the client aborted or sent too much. */
export async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) break;
      chunks.push(chunk);
    }
  } catch {
    // The client went away mid-body: nobody is left to answer.
  }
  if (size > MAX_BODY_BYTES || !req.complete) {
    req.socket.destroy();
    return undefined;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A Query-protocol answer. */
export function sendXml(res: ServerResponse, status: number, body: string, requestId: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    'content-type': 'text/xml',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': requestId,
  });
  res.end(body);
}

/** A JSON-protocol (application/x-amz-json-1.1) answer; errors also name their type in a header. */
export function sendAwsJson(res: ServerResponse, status: number, body: string, requestId: string, errorType?: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': requestId,
    ...(errorType === undefined ? {} : { 'x-amzn-errortype': errorType }),
  });
  res.end(body);
}

/** A control-plane answer. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
