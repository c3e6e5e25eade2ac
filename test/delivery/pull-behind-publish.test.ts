// Goal: a consumer waiting on an empty subscription — a long poll, a WebSocket, an idle webhook
// pusher — gets a new message one log round trip after it is published, not two: its pull (lease) is
// proposed as soon as the publish is, right behind it in the same log write, rather than after the
// publish has been committed and applied.
// Method: a real single-node HeraldNode (LMDB in a temp dir) in this process, with real sockets and a
// real webhook receiver. The lease must be in the log at the publish's index + 1 before the event loop
// turns (the old way proposed it only after the publish's log write, which takes several turns); a long
// poll must be answered in the turn the publish is; a publish the filter refuses must wake nobody.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { Delivery } from '../../src/core/broker/machine.js';
import type { SubscriptionConfig } from '../../src/core/broker/types.js';
import { PullService } from '../../src/delivery/pull-waiters.js';
import { PushDispatcher } from '../../src/delivery/push-dispatcher.js';
import { ConsumerSessions } from '../../src/delivery/ws-consumer.js';
import { HeraldNode } from '../../src/runtime/herald-node.js';
import { msg, subConfig, topicConfig } from '../core/broker/harness.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(sub: Partial<SubscriptionConfig> = {}): Promise<HeraldNode> {
  const dir = mkdtempSync(join(tmpdir(), 'herald-pull-behind-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const node = new HeraldNode({ dataDir: dir });
  cleanups.push(() => node.close());
  await node.caughtUp();
  const ok = (r: { ok: boolean }) => expect(r.ok).toBe(true);
  ok(await node.propose({ type: 'create-topic', name: 't', config: topicConfig() }));
  ok(await node.propose({ type: 'create-subscription', name: 's', config: subConfig('t', { filter: { tags: ['red'] }, ...sub }) }));
  return node;
}

/** Proposes a publish of one message with `tags`; returns its log index and its answer. */
function publish(node: HeraldNode, tags: string[]): { index: number; answered: Promise<unknown> } {
  const answered = node.propose({ type: 'publish', topic: 't', messages: [msg('m', { tags })] });
  return { index: node.lastLogIndex, answered };
}

/** Polls `check` with a deadline. */
async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const nextTurn = () => new Promise<'next turn'>((resolve) => setImmediate(() => resolve('next turn')));

describe('a waiting pull is proposed behind the publish that feeds it', () => {
  test('a long poll: the pull is in the log behind the publish and answered in the same turn', async () => {
    const node = await start();
    const pull = new PullService(node);
    const pulled = pull.pull('s', 10, 10_000, 30_000);
    await nextTurn(); // the pull is waiting now
    const p = node.propose({ type: 'publish', topic: 't', messages: [msg('hello', { tags: ['red'] })] });
    const publishIndex = node.lastLogIndex;
    await nextTurn();
    expect(node.lastLogIndex).toBe(publishIndex + 1);
    const published = await p;
    expect(published.ok).toBe(true);
    const first = await Promise.race([pulled, nextTurn()]);
    expect(first).not.toBe('next turn');
    expect((first as Delivery[]).map((d) => Buffer.from(d.message.data).toString())).toEqual(['hello']);
  });

  test('a long poll: a publish the filter refuses does not wake it; a later one that passes does', async () => {
    const node = await start();
    const pull = new PullService(node);
    let settled = false;
    const pulled = pull.pull('s', 10, 10_000, 30_000).finally(() => (settled = true));
    await nextTurn();
    expect((await node.propose({ type: 'publish', topic: 't', messages: [msg('blue', { tags: ['blue'] })] })).ok).toBe(true);
    await nextTurn();
    await nextTurn();
    expect(settled).toBe(false);
    expect((await node.propose({ type: 'publish', topic: 't', messages: [msg('red', { tags: ['red'] })] })).ok).toBe(true);
    expect((await pulled).map((d) => Buffer.from(d.message.data).toString())).toEqual(['red']);
  });

  test('a long poll whose client leaves stops waiting at once, and the next publish is leased to nobody', async () => {
    const node = await start();
    const pull = new PullService(node);
    const gone = new AbortController();
    let settled = false;
    const pulled = pull.pull('s', 10, 10_000, 30_000, gone.signal).finally(() => (settled = true));
    await nextTurn();
    expect(settled).toBe(false);
    gone.abort();
    expect(await Promise.race([pulled, nextTurn()])).toEqual([]); // answered in the turn the client left
    expect((await node.propose({ type: 'publish', topic: 't', messages: [msg('kept', { tags: ['red'] })] })).ok).toBe(true);
    // Nothing leased it: a pull now gets it.
    const again = await pull.pull('s', 10, 0, 30_000);
    expect(again.map((d) => Buffer.from(d.message.data).toString())).toEqual(['kept']);
  });

  test('a WebSocket consumer with credits leases behind the publish', async () => {
    const node = await start();
    const sessions = new ConsumerSessions(node);
    cleanups.push(() => sessions.shutdown());
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    cleanups.push(() => new Promise((r) => wss.close(r)));
    wss.on('connection', (socket) => sessions.open(socket, 's'));
    await new Promise((r) => wss.once('listening', r));
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    cleanups.push(() => client.terminate());
    const frames: { type: string; data?: string }[] = [];
    client.on('message', (data) => frames.push(JSON.parse(data.toString())));
    await new Promise((r) => client.once('open', r));
    client.send(JSON.stringify({ type: 'credit', n: 10 }));
    await until(() => sessions.size === 1, 'the session');
    await nextTurn();
    await nextTurn(); // the credit frame is in, and the session found nothing to pull

    const blue = publish(node, ['blue']);
    await nextTurn();
    expect(node.lastLogIndex).toBe(blue.index); // filtered out: nothing proposed behind it
    await blue.answered;

    const red = publish(node, ['red']);
    await nextTurn();
    expect(node.lastLogIndex).toBe(red.index + 1);
    await until(() => frames.some((f) => f.type === 'message'), 'the message frame');
    expect(frames.filter((f) => f.type === 'message').map((f) => f.data)).toEqual(['m']);
  });

  test('an idle webhook pusher leases behind the publish', async () => {
    const receiver = await WebhookReceiver.start();
    cleanups.push(() => receiver.close());
    const node = await start({ push: { url: `${receiver.url}/hook`, headers: {}, format: 'json', timeoutMs: 5000, maxInFlight: 16, rateLimitPerSecond: 0 } });
    const push = new PushDispatcher(node, { allowPrivate: true });
    cleanups.push(() => push.close());
    await nextTurn(); // the pusher looked and found nothing

    const blue = publish(node, ['blue']);
    await nextTurn();
    expect(node.lastLogIndex).toBe(blue.index);
    await blue.answered;

    const red = publish(node, ['red']);
    await nextTurn();
    expect(node.lastLogIndex).toBe(red.index + 1);
    await until(() => receiver.received.length === 1, 'the webhook');
    expect(receiver.received[0]!.json).toMatchObject({ data: 'm', tags: ['red'] });
  });
});
