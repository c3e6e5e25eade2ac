/**
 * NATS JetStream (Debian's nats-server) as a 3-node cluster on 127.0.0.1 with one file-storage stream
 * of 3 replicas, driven with nats.js.
 *
 * Each node has its own config file (server name, client port, JetStream store_dir in a temp dir,
 * cluster routes to the other two) and is our child process, stopped by its pid. Nothing else binds or
 * is touched.
 *
 * Load: one connection publishes with `js.publish` (each call resolves on the stream's PubAck; the
 * scenario keeps 1,000 unacknowledged); another connection consumes through a durable pull consumer
 * with explicit acks and max_ack_pending = inflight, fetched with `consume({max_messages: inflight})`.
 * Note: nats-server 2.9 acknowledges a publish once a majority has it, before fsync (sync_interval is
 * 2 minutes by default), so its confirms are weaker than RabbitMQ's and Herald's sync mode.
 */
import { rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AckPolicy, DeliverPolicy, StorageType, connect, type JetStreamManager, type NatsConnection } from 'nats';
import { freePorts } from '../cluster.js';
import { payload } from '../load.js';
import { tempDir } from '../server.js';
import { debVersion, ensureDebianPackages, run, spawnLogged, stopSpawned, type Spawned } from './proc.js';
import { stampOfBytes, waitFor, type Consumer, type OnMessage, type Peer, type Publisher } from './types.js';

const BIN = '/usr/sbin/nats-server';

export class NatsPeer implements Peer {
  readonly name = 'NATS JetStream';
  private stream = '';
  private seq = 0;
  private admin: NatsConnection | undefined;
  private jsm: JetStreamManager | undefined;
  private version = '?';

  private constructor(
    private readonly dir: string,
    private readonly procs: Spawned[],
    private readonly clientPorts: number[],
    private readonly size: number,
  ) {}

  static async start(size: number, n = 3): Promise<NatsPeer> {
    const missing = ensureDebianPackages([{ binary: BIN, pkg: 'nats-server' }]);
    if (missing) throw new Error(missing);
    const dir = tempDir('herald-peers-nats-');
    const ports = await freePorts(2 * n);
    const clientPorts = ports.slice(0, n);
    const routePorts = ports.slice(n);
    const procs: Spawned[] = [];
    const peer = new NatsPeer(dir, procs, clientPorts, size);
    try {
      for (let i = 0; i < n; i++) {
        const store = join(dir, `n${i + 1}`);
        mkdirSync(store);
        const conf = join(dir, `n${i + 1}.conf`);
        const routes = routePorts.filter((_, j) => j !== i).map((p) => `nats-route://127.0.0.1:${p}`);
        writeFileSync(
          conf,
          [
            `server_name: hb-n${i + 1}`,
            `listen: 127.0.0.1:${clientPorts[i]}`,
            `jetstream { store_dir: "${store}" }`,
            `cluster { name: herald-bench, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes.join(', ')}] }`,
          ].join('\n') + '\n',
        );
        procs.push(spawnLogged(`nats n${i + 1}`, BIN, ['-c', conf], process.env, dir));
      }
      peer.version = run(BIN, ['--version']).trim();
      // JetStream answers once its meta group has a leader and all 3 peers are known; a probe stream
      // with 3 replicas proves that.
      await waitFor('NATS JetStream with 3 peers', 60_000, async () => {
        for (const p of procs) if (p.gone()) throw new Error(`${p.name} exited: ${p.output().slice(-1500)}`);
        peer.admin ??= await connect({ servers: clientPorts.map((p) => `127.0.0.1:${p}`), timeout: 2000 });
        peer.jsm ??= await peer.admin.jetstreamManager();
        await peer.jsm!.streams.add({ name: 'PROBE', subjects: ['probe'], storage: StorageType.File, num_replicas: n });
        await peer.jsm!.streams.delete('PROBE');
        return true;
      });
      return peer;
    } catch (e) {
      await peer.stop();
      throw e;
    }
  }

  describe(): string {
    return `NATS ${this.version} (Debian ${debVersion('nats-server')}), ${this.procs.length} nodes, file stream R${this.procs.length}, js.publish with PubAcks, durable pull consumer, explicit acks`;
  }

  async reset(): Promise<void> {
    const jsm = this.jsm!;
    if (this.stream) await jsm.streams.delete(this.stream);
    this.stream = `BENCH${++this.seq}`;
    await jsm.streams.add({ name: this.stream, subjects: [this.subject()], storage: StorageType.File, num_replicas: this.procs.length });
  }

  private subject(): string {
    return `bench.${this.stream}`;
  }

  async publisher(): Promise<Publisher> {
    const nc = await connect({ servers: `127.0.0.1:${this.clientPorts[0]}` });
    const js = nc.jetstream();
    const subject = this.subject();
    const fixed = Buffer.from(payload(this.size));
    const size = this.size;
    const one = async (stamp: boolean) => {
      await js.publish(subject, stamp ? Buffer.from(payload(size, performance.now())) : fixed);
    };
    return {
      maxBatch: 1,
      async send(count, stamp) {
        if (count === 1) return one(stamp);
        await Promise.all(Array.from({ length: count }, () => one(stamp)));
      },
      async close() {
        await nc.drain().catch(() => {});
      },
    };
  }

  async consumer(inflight: number, onMessage: OnMessage): Promise<Consumer> {
    const jsm = this.jsm!;
    const name = `c${this.seq}`;
    await jsm.consumers.add(this.stream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      max_ack_pending: inflight,
    });
    const nc = await connect({ servers: `127.0.0.1:${this.clientPorts[0]}` });
    const c = await nc.jetstream().consumers.get(this.stream, name);
    const messages = await c.consume({ max_messages: inflight });
    const loop = (async () => {
      for await (const m of messages) {
        onMessage(stampOfBytes(m.data));
        m.ack();
      }
    })();
    return {
      async close() {
        await messages.close().catch(() => {});
        await loop.catch(() => {});
        await nc.drain().catch(() => {});
      },
    };
  }

  async stop(): Promise<void> {
    await this.admin?.close().catch(() => {});
    this.admin = undefined;
    await Promise.all(this.procs.map((p) => stopSpawned(p, 10_000)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
