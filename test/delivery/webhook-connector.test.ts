// Goal: webhook connections cannot reach loopback, private, link-local or metadata addresses unless the
// node allows it, whether the URL names an address or a name that resolves to one, and redirects are
// not followed. Method: a real HTTP receiver on 127.0.0.1 and undici requests through the agent.
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { request } from 'undici';
import { isBlockedAddress, isBlockedHost } from '../../src/delivery/ssrf.js';
import { SsrfBlockedError, webhookAgent } from '../../src/delivery/webhook-connector.js';

let server: Server;
let port = 0;
let hits = 0;
beforeAll(async () => {
  server = createServer((req, res) => {
    hits++;
    if (req.url === '/redirect') {
      res.writeHead(302, { location: `http://127.0.0.1:${port}/landed` });
      return res.end();
    }
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function attempt(url: string, allowPrivate: boolean): Promise<{ status?: number; error?: unknown }> {
  const agent = webhookAgent({ allowPrivate });
  try {
    const res = await request(url, { method: 'POST', body: '{}', dispatcher: agent });
    await res.body.text();
    return { status: res.statusCode };
  } catch (error) {
    return { error };
  } finally {
    await agent.close();
  }
}

describe('the SSRF guard when connecting', () => {
  test('a literal loopback address is refused by default and reached when allowed', async () => {
    const before = hits;
    const refused = await attempt(`http://127.0.0.1:${port}/hook`, false);
    expect(refused.error).toBeInstanceOf(SsrfBlockedError);
    expect(hits).toBe(before);
    expect((await attempt(`http://127.0.0.1:${port}/hook`, true)).status).toBe(200);
  });

  test('a name that resolves to loopback is refused at connect time', async () => {
    const before = hits;
    const refused = await attempt(`http://localhost:${port}/hook`, false);
    expect(String((refused.error as Error)?.message ?? refused.error)).toMatch(/refused to connect/);
    expect(hits).toBe(before);
  });

  test('IPv6 loopback and IPv4-mapped forms are refused too', async () => {
    expect((await attempt(`http://[::1]:${port}/hook`, false)).error).toBeInstanceOf(SsrfBlockedError);
    expect((await attempt(`http://[::ffff:127.0.0.1]:${port}/hook`, false)).error).toBeInstanceOf(SsrfBlockedError);
  });

  test('a redirect is answered as a 3xx, not followed', async () => {
    const before = hits;
    const r = await attempt(`http://127.0.0.1:${port}/redirect`, true);
    expect(r.status).toBe(302);
    expect(hits).toBe(before + 1);
  });
});

describe('address classification', () => {
  test.each([
    ['127.0.0.1', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['0.0.0.0', true],
    ['224.0.0.1', true],
    ['::1', true],
    ['fe80::1', true],
    ['fd00:ec2::254', true],
    ['::ffff:10.0.0.1', true],
    ['93.184.216.34', false],
    ['2606:4700::1111', false],
  ])('%s blocked: %s', (address, blocked) => {
    expect(isBlockedAddress(address)).toBe(blocked);
  });

  test.each([
    ['localhost', true],
    ['api.localhost', true],
    ['metadata.google.internal', true],
    ['[::1]', true],
    ['2130706433', true],
    ['0x7f000001', true],
    ['127.1', true],
    ['hooks.example.com', false],
  ])('host %s blocked before lookup: %s', (host, blocked) => {
    expect(isBlockedHost(host)).toBe(blocked);
  });
});
