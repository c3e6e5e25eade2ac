/** Starts one node: storage, the driver, the peer transport, delivery and the HTTP API; stops them in order. */
import { mkdirSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { HeraldNode } from './runtime/herald-node.js';
import { PullService } from './delivery/pull-waiters.js';
import { PushDispatcher } from './delivery/push-dispatcher.js';
import { Authenticator } from './http/auth.js';
import { DiskGuard } from './runtime/disk-guard.js';
import { trustForForwarding } from './http/forward.js';
import { buildApp } from './http/app.js';
import { PeerTransport, type PeerAddress } from './transport/peer-transport.js';
import type { NodeConfig } from './config.js';
import type { Message } from './core/raft/messages.js';
import type { PeerFrame, SnapshotChunk } from './transport/peer-codec.js';
import { startMemoryReducer } from './runtime/memory-reducer.js';

/** How long a planned stop waits for webhook calls in flight (the push timeout is 15 s by default). */
const shutdownDrainMs = 20_000;

export interface RunningServer {
  app: FastifyInstance;
  node: HeraldNode;
  url: string;
  close(): Promise<void>;
}

function parseAddress(id: number, address: string): PeerAddress {
  const m = /^(.+):(\d+):(\d+)$/.exec(address);
  if (!m) throw new Error(`member ${id} has a malformed address ${address}`);
  return { id, host: m[1]!, raftPort: Number(m[2]), httpPort: Number(m[3]) };
}

/** HERALD_WS_PING_MS: how often WebSocket clients are pinged (default 15 s; tests shorten it). */
function wsPingIntervalMs(): number | undefined {
  const v = process.env.HERALD_WS_PING_MS;
  if (v === undefined || v === '') return undefined;
  const ms = Number(v);
  if (!Number.isInteger(ms) || ms < 10) throw new Error(`HERALD_WS_PING_MS must be an integer of 10 or more, not ${v}`);
  return ms;
}

export async function startServer(config: NodeConfig): Promise<RunningServer> {
  mkdirSync(config.dataDir, { recursive: true });
  const scheme = config.tls ? 'https' : 'http';
  const cluster = config.cluster;
  let transport: PeerTransport | undefined;
  let deliver: (m: PeerFrame) => void = () => {};
  if (cluster) {
    transport = new PeerTransport({
      ...(config.tls ? { tls: config.tls } : {}),
      selfId: cluster.nodeId,
      host: config.host,
      port: cluster.raftPort,
      secret: cluster.secret,
      onMessage: (m) => deliver(m),
      onRefused: (reason) => console.warn(`herald: ${reason}`),
    });
    transport.setPeers(cluster.peers);
    await transport.listen();
  }
  // Members' HTTP addresses, for forwarding to the leader; kept current as members join and leave.
  const peerHttp = new Map<number, string>();
  // Before the node: a write that finds no room while the log is replayed at start holds it full too.
  const disk = new DiskGuard(config.dataDir, config.storage);
  const node = new HeraldNode({
    dataDir: config.dataDir,
    durability: config.durability,
    writeFailures: disk,
    ...(cluster
      ? {
          nodeId: cluster.nodeId,
          bootstrapVoters: cluster.join ? null : cluster.peers.map((p) => p.id),
          send: (messages: Message[]) => transport!.send(messages),
          sendChunk: (chunk: SnapshotChunk) => transport!.sendChunk(chunk),
          ...(process.env.HERALD_SNAPSHOT_CHUNK_BYTES ? { snapshotChunkBytes: Number(process.env.HERALD_SNAPSHOT_CHUNK_BYTES) } : {}),
          addresses: new Map(cluster.peers.map((p) => [p.id, `${p.host}:${p.raftPort}:${p.httpPort}`])),
          onAddresses: (addresses: Map<number, string>) => {
            const peers = [...addresses].map(([id, a]) => parseAddress(id, a));
            transport!.setPeers(peers);
            peerHttp.clear();
            for (const p of peers) peerHttp.set(p.id, `${scheme}://${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.httpPort}`);
          },
        }
      : {}),
    ...(config.snapshotEntries !== undefined ? { snapshotEntriesInterval: config.snapshotEntries } : {}),
  });
  deliver = (m) => node.receive(m);
  await node.caughtUp();
  const pull = new PullService(node);
  const push = new PushDispatcher(node, { allowPrivate: config.allowPrivateWebhooks });
  trustForForwarding(config.tls?.ca);
  const auth = new Authenticator(config.auth, node);
  if (!auth.enabled) {
    console.error(`herald: authentication is OFF: every client may do everything. On a shared network use --auth on --admin-token <token> (HERALD_AUTH=on, HERALD_ADMIN_TOKEN).`);
  }
  const app = buildApp({ node, pull, push, auth, disk, ...(config.tls ? { tls: config.tls } : {}), leaderUrl: (id) => peerHttp.get(id), allowPrivateWebhooks: config.allowPrivateWebhooks, wsPingIntervalMs: wsPingIntervalMs() });
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `${scheme}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  const stopMemoryReducer = startMemoryReducer();
  return {
    app,
    node,
    url,
    /**
     * A planned stop (SIGTERM): long polls answer at once; the HTTP server takes no new requests
     * (503 while closing), closes WebSockets (consumers give their leases back) and finishes what is in
     * flight; webhook calls in flight finish and their outcomes commit; a leader hands leadership to
     * the most caught-up voter; then the log's last write is synced and the process may exit. Nothing
     * acknowledged is lost either way — this only spares clients an election and redeliveries.
     */
    async close() {
      stopMemoryReducer();
      pull.shutdown();
      // A write waiting for room holds the requests that wait on it open: give it up first, so that
      // they are answered (503) and the HTTP server can close.
      if (node.writeStalled) await node.close();
      // fastify closes the connections that are idle when it starts closing; one still answering a
      // request then stays open until its keep-alive timeout (65 s) ran out, and the stop with it.
      // Close each as soon as it goes idle.
      const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
      try {
        await app.close();
      } finally {
        clearInterval(sweep);
      }
      await push.drain(shutdownDrainMs);
      await node.handOver();
      await push.close();
      disk.close();
      await node.close();
      await transport?.close();
    },
  };
}
