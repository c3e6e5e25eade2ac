// Goal: our webhook signatures verify with the reference Standard Webhooks library, for every secret
// during a rotation, and fail for a tampered body or a foreign secret. Method: sign here, verify there.
import { describe, expect, test } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { generateSecret, signatureHeaders } from '../../src/delivery/webhook-signature.js';

describe('Standard Webhooks signatures', () => {
  const now = Math.floor(Date.now() / 1000);

  test('a generated secret has the whsec_ form and verifies with standardwebhooks', () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const body = JSON.stringify({ id: 'a-1', data: 'héllo' });
    const headers = signatureHeaders([secret], 'a-1', now, body);
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
  });

  test('during a rotation both the old and the new secret verify', () => {
    const [oldSecret, newSecret] = [generateSecret(), generateSecret()];
    // (The library parses the body as JSON after checking the signature, so the body is JSON here.)
    const body = Buffer.from(JSON.stringify({ n: 7, text: 'ünïcode' }));
    const headers = signatureHeaders([newSecret, oldSecret], 'm-7', now, body);
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    for (const s of [oldSecret, newSecret]) expect(new Webhook(s).verify(body.toString(), headers)).toEqual({ n: 7, text: 'ünïcode' });
  });

  test('a tampered body, another secret or another id fails', () => {
    const secret = generateSecret();
    const headers = signatureHeaders([secret], 'm-1', now, '{"a":1}');
    expect(() => new Webhook(secret).verify('{"a":2}', headers)).toThrow();
    expect(() => new Webhook(generateSecret()).verify('{"a":1}', headers)).toThrow();
    expect(() => new Webhook(secret).verify('{"a":1}', { ...headers, 'webhook-id': 'm-2' })).toThrow();
  });
});
