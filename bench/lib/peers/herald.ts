/**
 * Herald as bench/cluster.ts runs it: 3 nodes from the esbuild bundle (BenchCluster), sync
 * durability by default (`relaxed` on request), one queue per scenario, all load sent to the leader.
 *
 * Load: the publisher POSTs batches of up to 16 messages (one HTTP request = one confirm for the
 * batch; the scenario keeps 1,000 messages unconfirmed, i.e. about 63 requests in flight); the
 * consumer runs inflight/500 pullers, each pulling up to 500 (long poll 1 s) and acking them with its
 * next pull (the pull's `ackIds`, applied before it leases), so at most `inflight` messages are out
 * unacked, as with a prefetch.
 * With --herald-consumer ws, a WebSocket consumer with `inflight` credits instead (wsConsumer); with
 * --herald-publisher ws, the publisher sends its batches as frames on one publishing WebSocket
 * (wsPublisher), each confirmed by its answer.
 */
import WebSocket from 'ws';
import { BenchCluster, buildBundle } from '../cluster.js';
import { Client } from '../http.js';
import { publishBody, stampOf } from '../load.js';
import { serverVersion } from '../server.js';
import { sleep, type Consumer, type OnMessage, type Peer, type Publisher } from './types.js';

/** Pull size per request; pullers = inflight / PULL_MAX. */
const PULL_MAX = 500;

export class HeraldPeer implements Peer {
  readonly name: string;
  private queue = '';
  private seq = 0;
  private readonly clients: Client[] = [];

  private constructor(
    private readonly cluster: BenchCluster,
    private readonly leaderUrl: string,
    private readonly control: Client,
    private readonly durability: 'sync' | 'relaxed',
    private readonly size: number,
    private readonly consumerKind: 'pull' | 'ws',
    private readonly publisherKind: 'http' | 'ws',
  ) {
    this.name = `Herald${durability === 'sync' ? '' : ' relaxed'}${consumerKind === 'ws' ? ' (WebSocket consumer)' : ''}`;
  }

  static async start(size: number, durability: 'sync' | 'relaxed', consumerKind: 'pull' | 'ws', build: boolean, publisherKind: 'http' | 'ws' = 'http'): Promise<HeraldPeer> {
    if (build) buildBundle();
    const { cluster, leader } = await BenchCluster.startLed(3, durability === 'relaxed' ? ['--durability', 'relaxed'] : []);
    const url = cluster.member(leader).url;
    return new HeraldPeer(cluster, url, new Client(url, 2), durability, size, consumerKind, publisherKind);
  }

  describe(): string {
    return `${this.name}: ${serverVersion()}, 3 nodes, durability ${this.durability}, ${this.publisherKind === 'ws' ? 'publishing WebSocket' : 'HTTP'} to the leader, publish batches ≤ 16, ${this.consumerKind === 'ws' ? 'WebSocket consumer (credits, acks per I/O turn)' : `pull ≤ ${PULL_MAX}, acked with the next pull`}`;
  }

  async reset(): Promise<void> {
    if (this.queue) await this.control.ok('DELETE', `/v1/queues/${this.queue}`);
    this.queue = `bench-${++this.seq}`;
    await this.control.ok('PUT', `/v1/queues/${this.queue}`, {});
  }

  async publisher(): Promise<Publisher> {
    if (this.publisherKind === 'ws') return this.wsPublisher();
    // One connection per request we may have in flight (1,000 / 16 → 63), as bench/cluster.ts does.
    const client = new Client(this.leaderUrl, 64);
    this.clients.push(client);
    const path = `/v1/queues/${this.queue}/messages`;
    const maxBatch = 16;
    const size = this.size;
    const fixed = publishBody(maxBatch, size, false);
    return {
      maxBatch,
      async send(count, stamp) {
        const body = count === maxBatch && !stamp ? fixed : publishBody(count, size, stamp);
        const r = await client.json('POST', path, body);
        if (r.status < 200 || r.status >= 300) throw new Error(`publish HTTP ${r.status}: ${JSON.stringify(r.body).slice(0, 200)}`);
        if (!Array.isArray(r.body?.results) || r.body.results.length !== count) throw new Error(`publish: ${count} messages but results ${JSON.stringify(r.body).slice(0, 200)}`);
      },
      async close() {
        await client.close().catch(() => {});
      },
    };
  }

  async consumer(inflight: number, onMessage: OnMessage): Promise<Consumer> {
    return this.consumerKind === 'ws' ? this.wsConsumer(inflight, onMessage) : this.pullConsumer(inflight, onMessage);
  }

  /**
   * The WebSocket consumer (`/v1/queues/{q}/ws`): `inflight` credits up front, like a prefetch; every
   * I/O turn acks what arrived in it (≤ 1000 ids per frame) and gives the same number of credits back,
   * so delivered-but-unacked plus credited stays at `inflight`.
   */
  private async wsConsumer(inflight: number, onMessage: OnMessage): Promise<Consumer> {
    const ws = new WebSocket(`${this.leaderUrl.replace(/^http/, 'ws')}/v1/queues/${this.queue}/ws`, { handshakeTimeout: 10_000 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    let pending: string[] = [];
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      if (ws.readyState !== WebSocket.OPEN) return;
      for (let i = 0; i < pending.length; i += 1000) {
        const ids = pending.slice(i, i + 1000);
        ws.send(JSON.stringify({ type: 'ack', ackIds: ids }));
        ws.send(JSON.stringify({ type: 'credit', n: ids.length }));
      }
      pending = [];
    };
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString()) as { type: string; data?: string; ackId?: string };
      if (f.type !== 'message') return;
      onMessage(stampOf(f.data!));
      pending.push(f.ackId!);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
    ws.send(JSON.stringify({ type: 'credit', n: inflight }));
    return {
      async close() {
        flush();
        const closed = new Promise<void>((r) => ws.once('close', () => r()));
        ws.close(1000);
        await Promise.race([closed, sleep(5000)]);
      },
    };
  }

  /**
   * The publishing WebSocket (`/v1/queues/{q}/messages/ws`): every `send` is one frame, confirmed by
   * the `published` answer with its id; the scenario's own cap keeps 1,000 messages unconfirmed.
   */
  private async wsPublisher(): Promise<Publisher> {
    const ws = new WebSocket(`${this.leaderUrl.replace(/^http/, 'ws')}/v1/queues/${this.queue}/messages/ws`, { handshakeTimeout: 10_000 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void; count: number }>();
    const failAll = (why: string) => {
      for (const w of waiting.values()) w.reject(new Error(why));
      waiting.clear();
    };
    ws.on('close', (code) => failAll(`publishing socket closed (${code})`));
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString()) as { type: string; id?: number; results?: unknown[]; code?: string; message?: string };
      const w = f.id === undefined ? undefined : waiting.get(f.id);
      if (!w) return;
      waiting.delete(f.id!);
      if (f.type === 'published' && f.results?.length === w.count) w.resolve();
      else w.reject(new Error(`publish: ${f.type} ${f.code ?? ''} ${f.message ?? ''}`));
    });
    const maxBatch = 16;
    const size = this.size;
    // The frame is the HTTP body with the frame's type and id in front: `{"messages":[...]}` minus its `{`.
    const fixed = publishBody(maxBatch, size, false).slice(1);
    let next = 0;
    return {
      maxBatch,
      send(count, stamp) {
        if (ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('publishing socket closed'));
        const id = next++;
        const rest = count === maxBatch && !stamp ? fixed : publishBody(count, size, stamp).slice(1);
        return new Promise<void>((resolve, reject) => {
          waiting.set(id, { resolve, reject, count });
          ws.send(`{"type":"publish","id":${id},${rest}`);
        });
      },
      async close() {
        const closed = new Promise((r) => ws.once('close', r));
        ws.close(1000);
        await Promise.race([closed, sleep(5000)]);
      },
    };
  }

  /** The pull consumer (see the top of the file). */
  private async pullConsumer(inflight: number, onMessage: OnMessage): Promise<Consumer> {
    const pullers = Math.max(1, Math.floor(inflight / PULL_MAX));
    const max = Math.min(PULL_MAX, inflight);
    const client = new Client(this.leaderUrl, pullers * 2);
    this.clients.push(client);
    const sub = `/v1/queues/${this.queue}`;
    let stopped = false;
    const worker = async () => {
      let toAck: string[] = [];
      // Bounded: at most 10 million pulls (far beyond any scenario); `close` ends it within a long poll.
      for (let i = 0; i < 10_000_000 && !stopped; i++) {
        const body = JSON.stringify(toAck.length > 0 ? { max, waitSeconds: 1, ackIds: toAck } : { max, waitSeconds: 1 });
        const r = await client.json('POST', `${sub}/pull`, body).catch((e: Error) => ({ status: 0, body: e.message }));
        if (r.status !== 200) {
          await sleep(50);
          continue;
        }
        const messages: { data: string; ackId: string }[] = r.body.messages;
        for (const m of messages) onMessage(stampOf(m.data));
        toAck = messages.map((m) => m.ackId);
      }
      if (toAck.length > 0) await client.json('POST', `${sub}/ack`, JSON.stringify({ ackIds: toAck })).catch(() => undefined);
    };
    const loops = Promise.all(Array.from({ length: pullers }, worker));
    return {
      async close() {
        stopped = true;
        await loops;
      },
    };
  }

  async stop(): Promise<void> {
    for (const c of this.clients) await c.close().catch(() => {});
    await this.control.close().catch(() => {});
    await this.cluster.stop();
  }
}
