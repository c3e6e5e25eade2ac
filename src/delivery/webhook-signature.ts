/**
 * Standard Webhooks signatures (webhook-id, webhook-timestamp, webhook-signature): HMAC-SHA256 over
 * "<id>.<timestamp>.<body>" with the subscription's secret, as `v1,<base64>`. During a secret rotation
 * both secrets sign, space-separated, so receivers can switch at their own pace.
 */
import { createHmac, randomBytes } from 'node:crypto';

const prefix = 'whsec_';

/** A new secret in the `whsec_<base64>` form the contract returns once on create. */
export function generateSecret(): string {
  return prefix + randomBytes(24).toString('base64');
}

// Decoding a secret is per push subscription, not per message: the last few decoded keys are kept.
// (A KeyObject would be slower here: createHmac with one costs twice as much as with a Buffer.)
const keys = new Map<string, Buffer>();
const keysCachedMax = 1024;

function keyOf(secret: string): Buffer {
  let key = keys.get(secret);
  if (!key) {
    key = Buffer.from(secret.startsWith(prefix) ? secret.slice(prefix.length) : secret, 'base64');
    if (keys.size >= keysCachedMax) keys.delete(keys.keys().next().value!);
    keys.set(secret, key);
  }
  return key;
}

export function signature(secret: string, id: string, timestampSeconds: number, body: Buffer | string): string {
  const mac = createHmac('sha256', keyOf(secret));
  mac.update(`${id}.${timestampSeconds}.`);
  mac.update(body);
  return `v1,${mac.digest('base64')}`;
}

/** The three headers for one delivery attempt, signed with every active secret. */
export function signatureHeaders(
  secrets: readonly string[],
  id: string,
  timestampSeconds: number,
  body: Buffer | string,
): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': secrets.map((s) => signature(s, id, timestampSeconds, body)).join(' '),
  };
}
