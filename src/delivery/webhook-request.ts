/**
 * What one push attempt sends: the body in the subscription's format and the headers (Standard
 * Webhooks signature, CloudEvents binary mode, attributes as headers), built from a delivery.
 * Pure apart from the HMAC: the dispatcher decides when and where to send it.
 */
import type { Delivery } from '../core/broker/machine.js';
import { messageId, type PushConfig } from '../core/broker/types.js';
import { dataBytes, isoTime, pushMessageBody } from '../http/render.js';
import { signatureHeaders } from './webhook-signature.js';

export interface WebhookRequest {
  /** The message's id (`webhook-id`). */
  id: string;
  headers: Record<string, string>;
  /** JSON as a string (signed and sent as UTF-8, never copied into a Buffer first), raw data as bytes. */
  body: Buffer | string;
}

const tokenPattern = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const headerValuePattern = /^[\t\x20-\x7e]*$/;

/** Header names and values travel as they are when HTTP allows it, percent-encoded otherwise. */
function headerName(name: string): string {
  return tokenPattern.test(name) ? name.toLowerCase() : encodeURIComponent(name).replace(/%/g, '_');
}
function headerValue(value: string): string {
  return headerValuePattern.test(value) ? value : encodeURIComponent(value);
}

/**
 * Builds one attempt. `secrets`: every secret that signs now (two during a rotation);
 * `timestampSeconds`: the attempt's time, signed with the body.
 */
export function buildWebhookRequest(
  push: PushConfig,
  topic: string,
  subscription: string,
  d: Delivery,
  secrets: readonly string[],
  timestampSeconds: number,
): WebhookRequest {
  const m = d.message;
  const id = messageId(d.topicId, m.seq);
  // The subscription's own headers go first: ours win over them.
  const headers: Record<string, string> = { ...push.headers };
  let body: Buffer | string;
  if (push.format === 'json') {
    body = pushMessageBody(d);
    headers['content-type'] = 'application/json';
  } else {
    body = dataBytes(m);
    headers['content-type'] = 'application/octet-stream';
    for (const [name, value] of Object.entries(m.attributes ?? {})) headers[`herald-attr-${headerName(name)}`] = headerValue(value);
    if (push.format === 'cloudevents') {
      headers['ce-specversion'] = '1.0';
      headers['ce-id'] = id;
      headers['ce-source'] = `/topics/${topic}`;
      headers['ce-type'] = 'herald.message';
      headers['ce-time'] = isoTime(m.publishTimeMs);
      if (m.routingKey !== undefined) headers['ce-subject'] = headerValue(m.routingKey);
    }
  }
  headers['herald-subscription'] = subscription;
  headers['herald-message-seq'] = String(m.seq);
  headers['herald-delivery-attempt'] = String(d.attempt);
  if (secrets.length > 0) Object.assign(headers, signatureHeaders(secrets, id, timestampSeconds, body));
  else headers['webhook-id'] = id;
  return { id, headers, body };
}

/**
 * A Retry-After header in milliseconds from `nowMs` (delta-seconds or an HTTP date); null when
 * absent or unreadable.
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return null;
  const trimmed = v.trim();
  if (/^\d{1,10}$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

/** The outcome name of an attempt that got no HTTP status (API.md: "the last HTTP status or error name"). */
export function errorOutcome(error: unknown): string {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: string }).code;
    const name = (e as { name?: string }).name;
    if (code === 'SSRF_BLOCKED') return 'ssrf-blocked';
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || name === 'TimeoutError') return 'timeout';
    if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect-timeout';
    if (code === 'ECONNREFUSED') return 'connection-refused';
    if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED') return 'connection-reset';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns-error';
    if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return 'response-too-large';
  }
  return 'error';
}
