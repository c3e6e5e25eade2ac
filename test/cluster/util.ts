/**
 * Helpers for the real-process cluster tests: an HTTP client with a time limit (a cut-off node may
 * never answer), cluster views, convergence checks, and a TCP proxy that can cut a Raft link.
 * Everything talks to 127.0.0.1 only.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { api, freePorts, type TestCluster } from '../helpers/herald-process.js';

export interface CallResult {
  /** 0 when the request failed (connection refused or reset, or timed out). */
  status: number;
  body: any;
  headers?: Headers;
  error?: string;
}

/** One JSON request with a time limit; never throws. */
export async function call(base: string, method: string, path: string, body?: unknown, timeoutMs = 5000): Promise<CallResult> {
  try {
    return await api(base, method, path, body, { timeoutMs });
  } catch (e) {
    return { status: 0, body: undefined, error: String((e as Error).message ?? e) };
  }
}

export interface ClusterView {
  nodeId: string;
  leaderId: string | null;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: { id: string; address: string; role: string; matchIndex: number }[];
  stateDigest?: string;
}

export async function view(base: string, digest = false, timeoutMs = 2000): Promise<ClusterView | undefined> {
  const r = await call(base, 'GET', `/v1/cluster${digest ? '?digest=1' : ''}`, undefined, timeoutMs);
  return r.status === 200 ? (r.body as ClusterView) : undefined;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls until every listed node has applied the same index and reports the same state digest (and
 * agrees on the leader); returns the views. Throws with the last views when the deadline passes.
 */
export async function waitConverged(cluster: TestCluster, ids: number[], timeoutMs = 20_000): Promise<ClusterView[]> {
  const deadline = Date.now() + timeoutMs;
  let last: (ClusterView | undefined)[] = [];
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    last = await Promise.all(ids.map((id) => view(cluster.url(id), true)));
    const ok =
      last.every((v) => v !== undefined && v.leaderId !== null) &&
      new Set(last.map((v) => v!.appliedIndex)).size === 1 &&
      new Set(last.map((v) => v!.stateDigest)).size === 1 &&
      new Set(last.map((v) => v!.leaderId)).size === 1 &&
      last[0]!.appliedIndex === last[0]!.commitIndex;
    if (ok) return last as ClusterView[];
    await sleep(100);
  }
  throw new Error(
    `nodes ${ids.join(',')} did not converge within ${timeoutMs} ms: ` +
      JSON.stringify(last.map((v) => v && { node: v.nodeId, leader: v.leaderId, term: v.term, commit: v.commitIndex, applied: v.appliedIndex, digest: v.stateDigest?.slice(0, 12) })),
  );
}

/** Polls until `id` answers /readyz 200 and has applied at least what the leader had committed when asked. */
export async function waitCaughtUp(cluster: TestCluster, id: number, leaderId: number, timeoutMs = 20_000): Promise<void> {
  const target = (await view(cluster.url(leaderId)))?.commitIndex ?? 0;
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    const ready = await call(cluster.url(id), 'GET', '/readyz', undefined, 2000);
    if (ready.status === 200 && ready.body.appliedIndex >= target) return;
    await sleep(50);
  }
  throw new Error(`node ${id} did not catch up to index ${target} within ${timeoutMs} ms`);
}

/**
 * Drains a subscription through `base`: pulls (and acks) until a pull with a short wait comes back
 * empty and the backlog is zero; returns the data of every message it got, in arrival order.
 */
export async function drain(base: string, sub: string, timeoutMs = 30_000): Promise<string[]> {
  const out: string[] = [];
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    const r = await call(base, 'POST', `/v1/subscriptions/${sub}/pull`, { max: 1000, waitSeconds: 0.2, ackDeadlineSeconds: 60 }, 10_000);
    if (r.status !== 200) {
      await sleep(50);
      continue;
    }
    const msgs = r.body.messages as { data: string; ackId: string }[];
    if (msgs.length === 0) {
      const info = await call(base, 'GET', `/v1/subscriptions/${sub}`);
      if (info.status === 200 && info.body.backlog === 0) return out;
      continue;
    }
    for (const m of msgs) out.push(m.data);
    await call(base, 'POST', `/v1/subscriptions/${sub}/ack`, { ackIds: msgs.map((m) => m.ackId) }, 10_000);
  }
  throw new Error(`subscription ${sub} did not drain within ${timeoutMs} ms (got ${out.length})`);
}

/**
 * A TCP proxy on 127.0.0.1 in front of one port. `cut()` destroys every connection through it and
 * refuses new ones (they are accepted and closed at once) until `heal()`.
 */
export class TcpProxy {
  private readonly server: Server;
  private readonly pairs = new Set<Socket>();
  private isCut = false;
  port = 0;
  /** Connections accepted while cut (and closed at once). */
  refused = 0;

  private constructor(readonly targetPort: number) {
    this.server = createServer((client) => this.accept(client));
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort);
    const [port] = (await freePorts(1)) as [number];
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      // A port of freePorts', not 0: one the cluster's nodes were given could come back from the kernel.
      p.server.listen(port, '127.0.0.1', () => resolve());
    });
    p.port = port;
    return p;
  }

  private accept(client: Socket): void {
    client.on('error', () => {});
    if (this.isCut) {
      this.refused++;
      client.destroy();
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: this.targetPort });
    upstream.on('error', () => {});
    this.pairs.add(client);
    this.pairs.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(client);
      this.pairs.delete(upstream);
    };
    client.on('close', close);
    upstream.on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  cut(): void {
    this.isCut = true;
    for (const s of this.pairs) s.destroy();
    this.pairs.clear();
  }

  heal(): void {
    this.isCut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
