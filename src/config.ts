/** Node configuration from flags and environment variables (flags win), as API.md's "Running" fixes them. */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { PeerAddress } from './transport/peer-transport.js';

export interface ClusterConfig {
  nodeId: number;
  raftPort: number;
  /** Every member, this node included. */
  peers: PeerAddress[];
  secret: string;
  /** Joining a running group (added with POST /v1/cluster/members) rather than founding one. */
  join: boolean;
}

export interface NodeConfig {
  host: string;
  port: number;
  dataDir: string;
  /** Log entries between two snapshots of the broker state; fewer means a faster restart. */
  snapshotEntries: number | undefined;
  /** Absent: a single node. */
  cluster: ClusterConfig | undefined;
  /** Push URLs may point at loopback, private, link-local or metadata addresses. */
  allowPrivateWebhooks: boolean;
  /** Bearer-token authentication (off only when configured off, or by default on loopback). */
  auth: { enabled: boolean; adminToken?: string };
  /** TLS for the client API and node-to-node traffic (PEM contents). */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
  /** When publishing stops for lack of room (see runtime/disk-guard.ts). */
  storage: { reserveBytes: number; maxBytes?: number };
  durability: 'sync' | 'relaxed';
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is an integer 0–65535');
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('a whole number of 0 or more');
  return n;
}

function durability(value: string): 'sync' | 'relaxed' {
  if (value !== 'sync' && value !== 'relaxed') throw new InvalidArgumentError('sync or relaxed');
  return value;
}

function onOff(v: string): boolean {
  if (v === 'on' || v === '1' || v === 'true') return true;
  if (v === 'off' || v === '0' || v === 'false') return false;
  throw new InvalidArgumentError(`"${v}" is not on or off`);
}

/** `id@host:raftPort:httpPort`, comma-separated. */
export function parsePeers(value: string): PeerAddress[] {
  return value.split(',').map((item) => {
    const m = /^(\d+)@([^@,]+):(\d+):(\d+)$/.exec(item.trim());
    if (!m) throw new InvalidArgumentError(`peer "${item}" is not id@host:raftPort:httpPort`);
    const id = Number(m[1]);
    if (id < 1 || id > 0xffffffff) throw new InvalidArgumentError(`peer id ${m[1]} out of range`);
    return { id, host: m[2]!, raftPort: port(m[3]!), httpPort: port(m[4]!) };
  });
}

/** A configuration that parses but does not make sense (commander has not printed it). */
export class ConfigError extends Error {}

export function parseNodeConfig(argv: string[], env: NodeJS.ProcessEnv): NodeConfig {
  const program = new Command('herald')
    .description('Herald: a pub/sub gateway with pull, webhook and WebSocket delivery')
    .option('--host <host>', 'address to listen on (HERALD_HOST)', env.HERALD_HOST ?? '127.0.0.1')
    .option('--port <port>', 'HTTP port (HERALD_PORT)', port, env.HERALD_PORT !== undefined ? port(env.HERALD_PORT) : 8080)
    .option('--data <dir>', 'data directory (HERALD_DATA_DIR)', env.HERALD_DATA_DIR ?? './data')
    .option(
      '--snapshot-entries <n>',
      'log entries between broker snapshots (HERALD_SNAPSHOT_ENTRIES)',
      positiveInt,
      env.HERALD_SNAPSHOT_ENTRIES !== undefined ? positiveInt(env.HERALD_SNAPSHOT_ENTRIES) : undefined,
    )
    .option('--node-id <id>', 'this node in a cluster (HERALD_NODE_ID)', positiveInt, env.HERALD_NODE_ID ? positiveInt(env.HERALD_NODE_ID) : undefined)
    .option('--raft-port <port>', 'port for Raft peers (HERALD_RAFT_PORT)', port, env.HERALD_RAFT_PORT ? port(env.HERALD_RAFT_PORT) : undefined)
    .option('--peers <list>', 'cluster members as id@host:raftPort:httpPort,... (HERALD_PEERS)', parsePeers, env.HERALD_PEERS ? parsePeers(env.HERALD_PEERS) : undefined)
    .option('--cluster-secret <secret>', 'shared secret peers prove they know (HERALD_CLUSTER_SECRET)', env.HERALD_CLUSTER_SECRET)
    .option('--join', 'join a running cluster instead of founding one (HERALD_JOIN=1)', env.HERALD_JOIN === '1')
    .option('--durability <mode>', 'sync (fsync before acknowledging) or relaxed (HERALD_DURABILITY)', durability, env.HERALD_DURABILITY ? durability(env.HERALD_DURABILITY) : 'sync')
    .option('--allow-private-webhooks', 'let push URLs point at loopback and private addresses (HERALD_WEBHOOK_ALLOW_PRIVATE=1)', env.HERALD_WEBHOOK_ALLOW_PRIVATE === '1')
    .option('--auth <mode>', 'on or off: require bearer tokens (HERALD_AUTH; default off on loopback, on otherwise)', onOff, env.HERALD_AUTH ? onOff(env.HERALD_AUTH) : undefined)
    .option('--storage-max-bytes <n>', 'bytes of message bodies Herald may keep; past it publishes get 503 (HERALD_STORAGE_MAX_BYTES)', positiveInt, env.HERALD_STORAGE_MAX_BYTES ? positiveInt(env.HERALD_STORAGE_MAX_BYTES) : undefined)
    .option('--disk-reserve-bytes <n>', 'free bytes the disk must keep; under it publishes get 503 (HERALD_DISK_RESERVE_BYTES)', nonNegativeInt, env.HERALD_DISK_RESERVE_BYTES ? nonNegativeInt(env.HERALD_DISK_RESERVE_BYTES) : 256 * 1024 * 1024)
    .option('--tls-cert <file>', 'PEM certificate: serve HTTPS and encrypt node-to-node traffic (HERALD_TLS_CERT)', env.HERALD_TLS_CERT)
    .option('--tls-key <file>', 'PEM private key of --tls-cert (HERALD_TLS_KEY)', env.HERALD_TLS_KEY)
    .option('--tls-ca <file>', 'PEM CA that signed the peers\' certificates (HERALD_TLS_CA; default: the system CAs)', env.HERALD_TLS_CA)
    .option('--admin-token <token>', 'the bootstrap admin token, at least 24 characters (HERALD_ADMIN_TOKEN)', env.HERALD_ADMIN_TOKEN)
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{
    host: string;
    port: number;
    data: string;
    snapshotEntries?: number;
    nodeId?: number;
    raftPort?: number;
    peers?: PeerAddress[];
    clusterSecret?: string;
    allowPrivateWebhooks: boolean;
    join: boolean;
    durability: 'sync' | 'relaxed';
    auth?: boolean;
    adminToken?: string;
    storageMaxBytes?: number;
    diskReserveBytes: number;
    tlsCert?: string;
    tlsKey?: string;
    tlsCa?: string;
  }>();
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new ConfigError('--tls-cert and --tls-key go together');
  let tls: NodeConfig['tls'];
  if (o.tlsCert !== undefined && o.tlsKey !== undefined) {
    const read = (file: string, what: string) => {
      try {
        return readFileSync(file);
      } catch (error) {
        throw new ConfigError(`cannot read ${what} ${file}: ${(error as Error).message}`);
      }
    };
    tls = { cert: read(o.tlsCert, '--tls-cert'), key: read(o.tlsKey, '--tls-key'), ...(o.tlsCa !== undefined ? { ca: read(o.tlsCa, '--tls-ca') } : {}) };
  }
  // Authentication is on unless the node only listens on loopback; on, it needs a way in.
  const loopback = o.host === '127.0.0.1' || o.host === '::1' || o.host === 'localhost';
  const authEnabled = o.auth ?? !loopback;
  if (o.adminToken !== undefined && o.adminToken.length < 24) throw new ConfigError('--admin-token must be at least 24 characters');
  if (authEnabled && o.adminToken === undefined) {
    throw new ConfigError('authentication is on: give --admin-token (or HERALD_ADMIN_TOKEN), or --auth off on a trusted network');
  }
  let cluster: ClusterConfig | undefined;
  if (o.peers || o.nodeId !== undefined) {
    if (!o.peers || o.nodeId === undefined) throw new ConfigError('a cluster node needs --node-id and --peers');
    const self = o.peers.find((p) => p.id === o.nodeId);
    if (!self) throw new ConfigError(`--peers does not list node ${o.nodeId}`);
    if (!o.clusterSecret || o.clusterSecret.length < 16) {
      throw new ConfigError('a cluster node needs --cluster-secret (or HERALD_CLUSTER_SECRET) of at least 16 characters');
    }
    cluster = { nodeId: o.nodeId, raftPort: o.raftPort ?? self.raftPort, peers: o.peers, secret: o.clusterSecret, join: o.join };
  }
  return {
    host: o.host,
    port: o.port,
    dataDir: o.data,
    snapshotEntries: o.snapshotEntries,
    cluster,
    allowPrivateWebhooks: o.allowPrivateWebhooks,
    durability: o.durability,
    auth: { enabled: authEnabled, ...(o.adminToken !== undefined ? { adminToken: o.adminToken } : {}) },
    storage: { reserveBytes: o.diskReserveBytes, ...(o.storageMaxBytes !== undefined ? { maxBytes: o.storageMaxBytes } : {}) },
    ...(tls ? { tls } : {}),
  };
}
