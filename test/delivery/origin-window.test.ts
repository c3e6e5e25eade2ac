// Goal: the pushers that post to one origin lease no more messages together than its window (twice
// its connections): a message is leased, its ack deadline running, only when a connection will take
// it soon, not to wait in a local queue. And the window starves nobody: every subscription gets all
// its messages, each delivered once, through a window far smaller than their windows added up.
// Method: a real single-node HeraldNode in this process with a PushDispatcher of 2 connections per
// origin (a window of 4), five push subscriptions of maxInFlight 8 on one topic, and a real receiver
// that holds its first two POSTs for 600 ms (nothing is answered, so every lease out is one the window
// counts: read from the state machine meanwhile; without the window it would be 40), then answers
// each after 5 ms.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { PushDispatcher } from '../../src/delivery/push-dispatcher.js';
import { HeraldNode } from '../../src/runtime/herald-node.js';
import { msg, subConfig, topicConfig } from '../core/broker/harness.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

test('pushers to one origin share its window: never more leased than it holds, every message delivered once', async () => {
  const holdMs = 600;
  const receiver = await WebhookReceiver.start((_r, i) => ({ status: 204, delayMs: i < 2 ? holdMs : 5 }));
  cleanups.push(() => receiver.close());
  const dir = mkdtempSync(join(tmpdir(), 'herald-origin-window-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const node = new HeraldNode({ dataDir: dir });
  cleanups.push(() => node.close());
  await node.caughtUp();
  const subs = ['s1', 's2', 's3', 's4', 's5'];
  const perSub = 24;
  expect((await node.propose({ type: 'create-topic', name: 't', config: topicConfig() })).ok).toBe(true);
  for (const [i, s] of subs.entries()) {
    // Different paths, one origin.
    const push = { url: `${receiver.url}/hook/${i}`, headers: {}, format: 'json' as const, timeoutMs: 5000, maxInFlight: 8, rateLimitPerSecond: 0 };
    expect((await node.propose({ type: 'create-subscription', name: s, config: subConfig('t', { push }) })).ok).toBe(true);
  }
  expect((await node.propose({ type: 'publish', topic: 't', messages: Array.from({ length: perSub }, (_, i) => msg(`m${i}`)) })).ok).toBe(true);

  const push = new PushDispatcher(node, { allowPrivate: true, connectionsPerOrigin: 2 });
  cleanups.push(() => push.close());
  const leased = () => subs.reduce((n, s) => n + node.machine.subscriptionInfo(s, node.now())!.inFlight, 0);
  // While the first two requests are held (both connections busy), nothing is answered.
  let deadline = Date.now() + 10_000;
  while (receiver.received.length < 2) {
    if (Date.now() > deadline) throw new Error('the first requests never came');
    await new Promise((r) => setTimeout(r, 2));
  }
  const heldUntil = receiver.received[0]!.atMs + holdMs - 100;
  let leasedMax = 0;
  while (Date.now() < heldUntil) {
    leasedMax = Math.max(leasedMax, leased());
    await new Promise((r) => setTimeout(r, 2));
  }
  expect(leasedMax).toBe(4); // the window, full: 2 on the wire, 2 queued for a connection
  deadline = Date.now() + 20_000;
  for (;;) {
    const infos = subs.map((s) => node.machine.subscriptionInfo(s, node.now())!);
    if (infos.every((i) => i.acked === perSub && i.inFlight === 0)) break;
    if (Date.now() > deadline) throw new Error(`push did not finish: ${JSON.stringify(infos.map((i) => [i.name, i.acked, i.inFlight]))}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  expect(receiver.maxOpen).toBeLessThanOrEqual(2);
  for (const s of subs) {
    const got = receiver.for(s).map((r) => r.json.data);
    expect(got.sort()).toEqual(Array.from({ length: perSub }, (_, i) => `m${i}`).sort());
  }
});
