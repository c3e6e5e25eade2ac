// Goal: a client that sends its request headers slowly (slowloris) is cut off after the headers
// timeout, while other clients are served meanwhile; an idle keep-alive connection is closed after the
// keep-alive timeout. Method: a real node with the timeout at 1.5 s
// (HERALD_HEADERS_TIMEOUT_MS); a raw TCP client dribbles a request line and headers one byte every
// 200 ms and never finishes; we time how long the server keeps the connection open.
import { connect } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald({ env: { HERALD_HEADERS_TIMEOUT_MS: '1500', HERALD_KEEP_ALIVE_TIMEOUT_MS: '1500' } });
});
afterAll(async () => {
  await h.stop();
  removeDataDir(h.dataDir);
});

test('headers that never finish: the connection is closed after the headers timeout', async () => {
  const { port } = new URL(h.url);
  const socket = connect({ host: '127.0.0.1', port: Number(port) });
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const started = Date.now();
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString()));
  const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now() - started)));
  socket.on('error', () => {});
  const slow = 'GET /v1/topics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(200);
  let i = 0;
  const dribble = setInterval(() => {
    if (i < slow.length && !socket.destroyed) socket.write(slow[i++]!);
  }, 200);
  // Meanwhile the node serves others.
  expect((await api(h.url, 'GET', '/v1/topics')).status).toBe(200);
  const ms = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 15_000))]);
  clearInterval(dribble);
  socket.destroy();
  expect(ms, 'the slow connection was never closed').toBeGreaterThan(0);
  expect(ms).toBeGreaterThanOrEqual(1400);
  expect(ms).toBeLessThan(6000);
  // The contract's error body (a 400 that names the timeout) when the socket can still take it.
  if (answer) {
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).toMatch(/"code":"InvalidRequest".*TIMEOUT/);
  }
}, 30_000);

test('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
  const { port } = new URL(h.url);
  const socket = connect({ host: '127.0.0.1', port: Number(port) });
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.on('error', () => {});
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString()));
  socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
  const answeredAt = await new Promise<number>((r) => {
    const poll = setInterval(() => {
      if (answer.includes('\r\n\r\n')) {
        clearInterval(poll);
        r(Date.now());
      }
    }, 5);
  });
  expect(answer).toMatch(/^HTTP\/1\.1 200/);
  const closedAfter = await Promise.race([
    new Promise<number>((r) => socket.once('close', () => r(Date.now() - answeredAt))),
    new Promise<number>((r) => setTimeout(() => r(-1), 10_000)),
  ]);
  socket.destroy();
  expect(closedAfter, 'the idle connection was never closed').toBeGreaterThan(0);
  expect(closedAfter).toBeGreaterThanOrEqual(1300);
  expect(closedAfter).toBeLessThan(5000);
}, 20_000);
