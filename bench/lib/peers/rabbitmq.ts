/**
 * RabbitMQ (Debian's rabbitmq-server 3.10) as a 3-node cluster on 127.0.0.1 with one quorum queue
 * replicated on all three, driven with amqplib.
 *
 * Isolation from anything else on the machine (the Debian package may run a system node): every node
 * gets its own name (hbN-<random>@localhost), AMQP and distribution ports, mnesia/log dirs, config,
 * enabled-plugins file (empty) and a temp HOME whose .erlang.cookie only our nodes share; the Erlang
 * port mapper runs on a port of its own (ERL_EPMD_PORT) so that the one we start is ours to stop. We
 * run the real script in /usr/lib/rabbitmq/bin (the /usr/sbin wrapper would `su rabbitmq` and reset the
 * environment). Stopping uses `rabbitmqctl stop` on our node names, then our child pids, then
 * `epmd -kill` on our epmd port.
 *
 * Load: one connection with a confirm channel publishes (persistent messages, one confirm awaited per
 * message, the scenario keeps 1,000 unconfirmed); another connection consumes with prefetch = inflight
 * and manual acks, acking "multiple" once per I/O turn for everything delivered in it.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import amqp from 'amqplib';
import { payload } from '../load.js';
import { freePorts } from '../cluster.js';
import { tempDir } from '../server.js';
import { debVersion, ensureDebianPackages, run, runAsync, spawnLogged, stopSpawned, type Spawned } from './proc.js';
import { stampOfBytes, waitFor, type Consumer, type OnMessage, type Peer, type Publisher } from './types.js';

const BIN = '/usr/lib/rabbitmq/bin';

interface RabbitNode {
  name: string;
  amqpPort: number;
  proc: Spawned;
}

export class RabbitPeer implements Peer {
  readonly name = 'RabbitMQ';
  private queue = '';
  private seq = 0;
  private admin: amqp.ChannelModel | undefined;
  private adminCh: amqp.Channel | undefined;
  private members = '';

  private constructor(
    private readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly epmdPort: number,
    private readonly nodes: RabbitNode[],
    private readonly size: number,
  ) {}

  static async start(size: number, n = 3): Promise<RabbitPeer> {
    const missing = ensureDebianPackages([
      { binary: '/usr/sbin/rabbitmq-server', pkg: 'rabbitmq-server' },
      { binary: `${BIN}/rabbitmq-server`, pkg: 'rabbitmq-server' },
    ]);
    if (missing) throw new Error(missing);
    const dir = tempDir('herald-peers-rabbit-');
    const ports = await freePorts(2 * n + 1);
    const epmdPort = ports[2 * n]!;
    const tag = randomBytes(3).toString('hex');
    const home = join(dir, 'home');
    mkdirSync(home);
    writeFileSync(join(home, '.erlang.cookie'), `HERALDBENCH${randomBytes(12).toString('hex').toUpperCase()}`);
    chmodSync(join(home, '.erlang.cookie'), 0o600);
    writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
    // What rabbitmqctl needs to reach our nodes (and only ours): the cookie and our epmd.
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, ERL_EPMD_PORT: String(epmdPort), LC_ALL: 'C.UTF-8' };
    const nodes: RabbitNode[] = [];
    const peer = new RabbitPeer(dir, env, epmdPort, nodes, size);
    try {
      for (let i = 0; i < n; i++) {
        const name = `hb${i + 1}-${tag}@localhost`;
        const amqpPort = ports[2 * i]!;
        const distPort = ports[2 * i + 1]!;
        const nodeDir = join(dir, `node${i + 1}`);
        mkdirSync(join(nodeDir, 'log'), { recursive: true });
        const conf = join(nodeDir, 'rabbitmq.conf');
        writeFileSync(
          conf,
          [
            `listeners.tcp.1 = 127.0.0.1:${amqpPort}`,
            'loopback_users.guest = true',
            // The default memory watermark (40% of RAM) and disk limit are fine; no management plugin.
            'log.console = true',
            'log.console.level = warning',
            'log.file = false',
          ].join('\n') + '\n',
        );
        const nodeEnv: NodeJS.ProcessEnv = {
          ...env,
          RABBITMQ_NODENAME: name,
          RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
          RABBITMQ_NODE_PORT: String(amqpPort),
          RABBITMQ_DIST_PORT: String(distPort),
          RABBITMQ_MNESIA_BASE: join(nodeDir, 'mnesia'),
          RABBITMQ_LOG_BASE: join(nodeDir, 'log'),
          RABBITMQ_CONFIG_FILE: conf,
          RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
          RABBITMQ_PID_FILE: join(nodeDir, 'pid'),
        };
        const proc = spawnLogged(name, `${BIN}/rabbitmq-server`, [], nodeEnv, nodeDir);
        nodes.push({ name, amqpPort, proc });
      }
      for (const node of nodes) {
        await waitFor(`rabbitmq node ${node.name}`, 120_000, async () => {
          if (node.proc.gone()) throw new Error(`exited: ${node.proc.output().slice(-1500)}`);
          await runAsync(`${BIN}/rabbitmqctl`, ['-n', node.name, 'await_startup', '--timeout', '10'], env, 20_000);
          return true;
        });
      }
      // Join nodes 2..n to node 1 (stop_app, join_cluster, start_app is RabbitMQ's documented way).
      for (const node of nodes.slice(1)) {
        const ctl = (...args: string[]) => runAsync(`${BIN}/rabbitmqctl`, ['-n', node.name, ...args], env, 120_000);
        await ctl('stop_app');
        await ctl('join_cluster', nodes[0]!.name);
        await ctl('start_app');
      }
      const status = await runAsync(`${BIN}/rabbitmqctl`, ['-n', nodes[0]!.name, 'cluster_status', '--formatter', 'json'], env);
      const running: string[] = JSON.parse(status.slice(status.indexOf('{'))).running_nodes ?? [];
      if (running.length !== n) throw new Error(`cluster formed with ${running.length} running nodes, not ${n}: ${status.slice(0, 500)}`);
      const admin = await amqp.connect(peer.url(0));
      peer.admin = admin;
      peer.adminCh = await admin.createChannel();
      return peer;
    } catch (e) {
      await peer.stop();
      throw e;
    }
  }

  private url(i: number): string {
    return `amqp://guest:guest@127.0.0.1:${this.nodes[i]!.amqpPort}`;
  }

  describe(): string {
    return `RabbitMQ ${debVersion('rabbitmq-server')} (Erlang ${debVersion('erlang-base')}), ${this.nodes.length} nodes, quorum queue${this.members ? ` on ${this.members}` : ''}, persistent messages, publisher confirms, prefetch + manual acks (multiple)`;
  }

  async reset(): Promise<void> {
    const ch = this.adminCh!;
    if (this.queue) await ch.deleteQueue(this.queue);
    this.queue = `bench-${++this.seq}`;
    // Declared through node 1, which therefore leads it; the clients connect to node 1 too.
    await ch.assertQueue(this.queue, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-quorum-initial-group-size': this.nodes.length } });
    if (!this.members) {
      // Check once that the queue really has a member on every node.
      const out = await runAsync(`${BIN}/rabbitmqctl`, ['-n', this.nodes[0]!.name, 'list_queues', 'name', 'type', 'members', '--formatter', 'json'], this.env);
      const q = (JSON.parse(out.slice(out.indexOf('['))) as { name: string; type: string; members: string[] }[]).find((x) => x.name === this.queue);
      if (!q || q.type !== 'quorum' || q.members.length !== this.nodes.length) throw new Error(`queue is not a quorum queue on ${this.nodes.length} nodes: ${JSON.stringify(q)}`);
      this.members = `${q.members.length} members`;
    }
  }

  async publisher(): Promise<Publisher> {
    const conn = await amqp.connect(this.url(0));
    const ch = await conn.createConfirmChannel();
    const queue = this.queue;
    const fixed = Buffer.from(payload(this.size));
    const size = this.size;
    const one = (stamp: boolean) =>
      new Promise<void>((resolve, reject) => {
        const body = stamp ? Buffer.from(payload(size, performance.now())) : fixed;
        // The callback is the broker's confirm (ack) or nack for this message.
        ch.sendToQueue(queue, body, { persistent: true }, (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()));
      });
    return {
      maxBatch: 1,
      async send(count, stamp) {
        if (count === 1) return one(stamp);
        await Promise.all(Array.from({ length: count }, () => one(stamp)));
      },
      async close() {
        await ch.close().catch(() => {});
        await conn.close().catch(() => {});
      },
    };
  }

  async consumer(inflight: number, onMessage: OnMessage): Promise<Consumer> {
    const conn = await amqp.connect(this.url(0));
    const ch = await conn.createChannel();
    await ch.prefetch(inflight);
    // Ack "multiple" once per I/O turn: everything delivered up to the last message seen.
    let last: amqp.ConsumeMessage | undefined;
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      if (last) ch.ack(last, true);
      last = undefined;
    };
    const { consumerTag } = await ch.consume(
      this.queue,
      (m) => {
        if (!m) return;
        onMessage(stampOfBytes(m.content));
        last = m;
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      },
      { noAck: false },
    );
    return {
      async close() {
        await ch.cancel(consumerTag).catch(() => {});
        flush();
        await ch.close().catch(() => {});
        await conn.close().catch(() => {});
      },
    };
  }

  async stop(): Promise<void> {
    await this.admin?.close().catch(() => {});
    this.admin = undefined;
    for (const node of [...this.nodes].reverse()) {
      if (node.proc.gone()) continue;
      try {
        await runAsync(`${BIN}/rabbitmqctl`, ['-n', node.name, 'stop'], this.env, 60_000);
      } catch {
        /* falls back to signalling our child below */
      }
      await stopSpawned(node.proc, 20_000);
    }
    try {
      // Our own epmd (it was started by our first node, on our port).
      run('epmd', ['-port', String(this.epmdPort), '-kill'], this.env, 10_000);
    } catch {
      /* not running */
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
