// Goal: publishing over a WebSocket (README, "WebSocket") does what POST .../messages does, frame by
// frame: each publish frame is committed before it is answered, with the same results and the same
// checks (schema, limits, JSON rules); a bad frame gets an error frame with its id and publishes
// nothing while the socket goes on; a frame over the body limit closes the socket (1009); refused
// upgrades answer with the contract's JSON error. And the flow control: a socket with too many
// messages unanswered is not read until half are answered.
// Method: a real node process and real `ws` clients on 127.0.0.1 (every wait polls with a deadline);
// the flow control, which needs commits held back at will, against PublishSession with a stand-in
// node whose proposals the test answers itself.
import { EventEmitter } from 'node:events';
import { describe, expect, test } from 'vitest';
import { apiOk, eventually } from '../helpers/herald-process.js';
import { heraldWithSockets, WsClient } from '../helpers/ws-client.js';
import { PublishSession } from '../../src/http/ws-publish.js';
import { wsLimits } from '../../src/delivery/ws-limits.js';
import type { HeraldNode } from '../../src/runtime/herald-node.js';

const node = heraldWithSockets();

let n = 0;
async function topic(config: Record<string, unknown> = {}): Promise<string> {
  const t = `wp-topic-${++n}`;
  await apiOk(node.url, 'PUT', `/v1/topics/${t}`, config);
  return t;
}

const open = (path: string) => node.open(path);

/** Everything in a topic, through a subscription from the start. */
async function contents(t: string): Promise<any[]> {
  const s = `${t}-reader`;
  await apiOk(node.url, 'PUT', `/v1/subscriptions/${s}`, { topic: t, startAt: 'earliest' });
  const r = await apiOk(node.url, 'POST', `/v1/subscriptions/${s}/pull`, { max: 1000, waitSeconds: 0 });
  return r.body.messages;
}

describe('publishing sockets', () => {
  test('each frame is one publish, answered once committed with the results POST would give', async () => {
    const t = await topic();
    const c = await open(`/v1/topics/${t}/messages/ws`);
    c.send({ type: 'publish', id: 1, messages: [{ data: 'a' }, { data: 'b', attributes: { k: 'v' }, tags: ['x'] }] });
    c.send({ type: 'publish', id: 'second', messages: [{ data: 'aGk=', encoding: 'base64', dedupId: 'd-1' }] });
    c.send({ type: 'publish', id: 'again', messages: [{ data: 'aGk=', encoding: 'base64', dedupId: 'd-1' }] });
    const [first, second, again] = await c.take(3);
    expect(first).toMatchObject({ type: 'published', id: 1, results: [{ seq: 1, duplicate: false }, { seq: 2, duplicate: false }] });
    expect(second).toMatchObject({ type: 'published', id: 'second', results: [{ seq: 3, duplicate: false }] });
    // The dedup window applies as on HTTP.
    expect(again).toMatchObject({ type: 'published', id: 'again', results: [{ seq: 3, duplicate: true }] });
    expect(typeof first.results[0].id).toBe('string');
    const got = await contents(t);
    expect(got.map((m) => [m.seq, m.data])).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'aGk='],
    ]);
    expect(got[1]).toMatchObject({ attributes: { k: 'v' }, tags: ['x'] });
    expect(got[2].encoding).toBe('base64');
    // Strings that JSON escapes come back as they went in.
    c.send({ type: 'publish', id: 4, messages: [{ data: 'line\n"quoted" \\ ☃' }] });
    expect(await c.next('published')).toMatchObject({ id: 4, results: [{ seq: 4 }] });
    const next = await apiOk(node.url, 'POST', `/v1/subscriptions/${t}-reader/pull`, { max: 10, waitSeconds: 0 });
    expect(next.body.messages.map((m: any) => m.data)).toEqual(['line\n"quoted" \\ ☃']);
    expect((await apiOk(node.url, 'GET', `/v1/topics/${t}`)).body.messages).toBe(4);
  });

  test('a queue takes publishing sockets under /v1/queues too', async () => {
    await apiOk(node.url, 'PUT', '/v1/queues/wp-queue', {});
    const c = await open('/v1/queues/wp-queue/messages/ws');
    c.send({ type: 'publish', id: 7, messages: [{ data: 'job' }] });
    expect(await c.next('published')).toMatchObject({ id: 7, results: [{ seq: 1 }] });
    const pulled = await apiOk(node.url, 'POST', '/v1/queues/wp-queue/pull', { max: 10, waitSeconds: 0 });
    expect(pulled.body.messages.map((m: any) => m.data)).toEqual(['job']);
  });

  test('a bad frame gets an error frame (with its id when it has one), publishes nothing, and the socket goes on', async () => {
    const t = await topic({ maxMessageBytes: 1024 });
    const c = await open(`/v1/topics/${t}/messages/ws`);
    const bad: [unknown, string | number | undefined, string][] = [
      ['not json', undefined, 'InvalidRequest'],
      ['5', undefined, 'InvalidRequest'],
      ['[1,2]', undefined, 'InvalidRequest'],
      [{ type: 'publish', id: 'e1', messages: [] }, 'e1', 'InvalidRequest'],
      [{ type: 'publish', id: 'e2', messages: [{ data: 'x' }], extra: true }, 'e2', 'InvalidRequest'],
      [{ type: 'publish', id: 'e3', messages: [{ data: 'x', delaySeconds: 901 }] }, 'e3', 'InvalidRequest'],
      [{ type: 'publish', id: 'e4', messages: [{ data: 'x'.repeat(1025) }] }, 'e4', 'PayloadTooLarge'],
      [{ type: 'publish', id: 'e5', messages: [{ data: '***', encoding: 'base64' }] }, 'e5', 'InvalidRequest'],
      [{ type: 'pull', id: 'e6' }, 'e6', 'InvalidRequest'],
      [{ type: 'publish', messages: [{ data: 'no id' }] }, undefined, 'InvalidRequest'],
      [{ type: 'publish', id: '', messages: [{ data: 'empty id' }] }, undefined, 'InvalidRequest'],
      ['{"type":"publish","id":"e7","messages":[{"data":"x"}],"__proto__":{"polluted":1}}', undefined, 'InvalidRequest'],
      ['{"type":"publish","id":"e8","messages":[{"data":"\\u0078","constructor":{"prototype":{}}}]}', undefined, 'InvalidRequest'],
    ];
    for (const [frame, id, code] of bad) {
      c.send(frame);
      const answer = await c.next('error');
      expect(answer.code, JSON.stringify(frame)).toBe(code);
      expect(answer.id, JSON.stringify(frame)).toBe(id);
      expect(typeof answer.message).toBe('string');
    }
    c.ws.send(Buffer.from('{"type":"publish","id":"bin","messages":[{"data":"x"}]}'), { binary: true });
    expect(await c.next('error')).toMatchObject({ code: 'InvalidRequest' });
    // Nothing of them was published, and the socket still works.
    c.send({ type: 'publish', id: 'ok', messages: [{ data: 'fine' }] });
    expect(await c.next('published')).toMatchObject({ id: 'ok', results: [{ seq: 1 }] });
    expect((await apiOk(node.url, 'GET', `/v1/topics/${t}`)).body.messages).toBe(1);
  });

  test('a frame over the body limit closes the socket with 1009; one just under it is published', async () => {
    const t = await topic({ maxMessageBytes: 10 * 1024 * 1024 });
    const c = await open(`/v1/topics/${t}/messages/ws`);
    const under = JSON.stringify({ type: 'publish', id: 'big', messages: [{ data: 'y'.repeat(10 * 1024 * 1024 - 100) }] });
    expect(under.length).toBeLessThanOrEqual(wsLimits.publishFrameBytesMax);
    c.send(under);
    expect(await c.next('published', 30_000)).toMatchObject({ id: 'big', results: [{ seq: 1 }] });
    c.send('x'.repeat(wsLimits.publishFrameBytesMax + 1));
    expect((await c.closed).code).toBe(1009);
    expect((await apiOk(node.url, 'GET', `/v1/topics/${t}`)).body.messages).toBe(1);
  });

  test('a topic deleted under a socket: its frames get TopicNotFound, and it comes back once the topic does', async () => {
    const t = await topic();
    const c = await open(`/v1/topics/${t}/messages/ws`);
    await apiOk(node.url, 'DELETE', `/v1/topics/${t}`);
    c.send({ type: 'publish', id: 1, messages: [{ data: 'lost?' }] });
    expect(await c.next('error')).toMatchObject({ id: 1, code: 'TopicNotFound' });
    await apiOk(node.url, 'PUT', `/v1/topics/${t}`, {});
    c.send({ type: 'publish', id: 2, messages: [{ data: 'back' }] });
    expect(await c.next('published')).toMatchObject({ id: 2, results: [{ seq: 1 }] });
  });

  test('refused upgrades answer with the contract\'s JSON error', async () => {
    const missing = await WsClient.refusal(node.url, '/v1/topics/no-such-topic/messages/ws');
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('TopicNotFound');
    const badName = await WsClient.refusal(node.url, '/v1/topics/%20bad/messages/ws');
    expect(badName.status).toBe(400);
    expect(badName.body.error.code).toBe('InvalidRequest');
    const subs = await WsClient.refusal(node.url, '/v1/subscriptions/x/messages/ws');
    expect(subs.status).toBe(404);
  });

  test('100 bad frames in a row close the socket with 1008', async () => {
    const t = await topic();
    const c = await open(`/v1/topics/${t}/messages/ws`);
    for (let i = 0; i < wsLimits.badFramesInARowMax; i++) c.send('nonsense');
    expect((await c.closed).code).toBe(1008);
  });
});

/** A socket as PublishSession uses it: frames in, frames out, pause and resume counted. */
class StandInSocket extends EventEmitter {
  readonly sent: any[] = [];
  paused = false;
  pauses = 0;
  /** What ws would have queued for the client; `_socket` says when it drained. */
  bufferedAmount = 0;
  readonly _socket = Object.assign(new EventEmitter(), { destroyed: false });
  send(text: string): void {
    this.sent.push(JSON.parse(text));
  }
  pause(): void {
    this.paused = true;
    this.pauses++;
  }
  resume(): void {
    this.paused = false;
  }
  close(): void {
    this.emit('close');
  }
}

/** A node whose commits the test releases: every proposal waits in `pending`. */
function standInNode(): { node: HeraldNode; pending: (() => void)[] } {
  const pending: (() => void)[] = [];
  let seq = 0;
  const node = {
    machine: { topicConfig: () => ({ maxMessageBytes: 1024 }) },
    propose: (command: { messages: unknown[] }) =>
      new Promise((resolve) => pending.push(() => resolve({ ok: true, results: command.messages.map(() => ({ id: `m${++seq}`, seq, duplicate: false })) }))),
  } as unknown as HeraldNode;
  return { node, pending };
}

const publishFrame = (id: number, count: number) =>
  Buffer.from(JSON.stringify({ type: 'publish', id, messages: Array.from({ length: count }, () => ({ data: 'x' })) }));

describe('flow control', () => {
  test('with publishMessagesUnconfirmedMax messages unanswered the socket is paused, and resumed once half are answered', async () => {
    const { node, pending } = standInNode();
    const ws = new StandInSocket();
    new PublishSession(ws as never, 't', undefined, { node });
    const batch = 1000;
    const frames = wsLimits.publishMessagesUnconfirmedMax / batch;
    const frame = (id: number) => publishFrame(id, batch);
    for (let i = 0; i < frames - 1; i++) ws.emit('message', frame(i), false);
    await eventually(() => pending.length === frames - 1);
    expect(ws.paused).toBe(false);
    ws.emit('message', frame(frames - 1), false);
    await eventually(() => pending.length === frames);
    expect(ws.paused).toBe(true);
    // Answering fewer than half keeps it paused; past half, it reads again.
    for (let i = 0; i < frames / 2; i++) pending.shift()!();
    await eventually(() => ws.sent.length === frames / 2);
    expect(ws.paused).toBe(true);
    pending.shift()!();
    await eventually(() => ws.sent.length === frames / 2 + 1);
    expect(ws.paused).toBe(false);
    expect(ws.pauses).toBe(1);
    for (const release of pending.splice(0)) release();
    await eventually(() => ws.sent.length === frames);
    expect(ws.sent.every((f) => f.type === 'published' && f.results.length === batch)).toBe(true);
    expect(ws.sent.map((f) => f.id)).toEqual(Array.from({ length: frames }, (_, i) => i));
  });

  test('a client that does not read its answers is not read either, until they drain', async () => {
    const { node, pending } = standInNode();
    const ws = new StandInSocket();
    new PublishSession(ws as never, 't', undefined, { node });
    ws.emit('message', publishFrame(1, 1), false);
    ws.emit('message', publishFrame(2, 1), false);
    await eventually(() => pending.length === 2);
    // The answers queued for the client pass the send buffer's bound.
    ws.bufferedAmount = wsLimits.sendBufferBytesMax + 1;
    pending.shift()!();
    await eventually(() => ws.sent.length === 1);
    expect(ws.paused).toBe(true);
    // Another answer while it is still backed up: still held back.
    pending.shift()!();
    await eventually(() => ws.sent.length === 2);
    expect(ws.paused).toBe(true);
    ws.bufferedAmount = 0;
    ws._socket.emit('drain');
    await eventually(() => !ws.paused);
    expect(ws.pauses).toBe(1);
  });
});
