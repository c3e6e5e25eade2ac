/**
 * Starts a real Herald node as a child process (`tsx src/main.ts`) on a free loopback port with its
 * own temp data dir, waits for its listening line, and stops it (SIGTERM, or SIGKILL to crash it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { nodeProcessEnv } from '../../src/runtime/process-env.js';

const root = resolve(import.meta.dirname, '../..');
/** Tests run what `npm start` runs: the bundle that vitest's global setup builds. */
const mainScript = join(root, 'dist/main.js');

export interface HeraldProcess {
  url: string;
  dataDir: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, nothing flushed on the way out. */
  kill(): Promise<void>;
}

export function tempDataDir(prefix = 'herald-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startHerald(options: { dataDir?: string; env?: Record<string, string>; args?: string[] } = {}): Promise<HeraldProcess> {
  const dataDir = options.dataDir ?? tempDataDir();
  const child = spawn(process.execPath, ['--enable-source-maps', '--expose-gc', mainScript, '--port', '0', '--data', dataDir, ...(options.args ?? [])], {
    cwd: root,
    env: { ...process.env, ...nodeProcessEnv, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start within 30 s:\n${out}`)), 30_000);
    const onData = () => {
      const m = /herald listening on (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`herald exited with ${code} before listening:\n${out}`));
    });
  });
  return {
    url,
    dataDir,
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A small JSON client for tests: returns status, headers and parsed body; never throws on 4xx/5xx. */
export async function api(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  init: { raw?: string; headers?: Record<string, string>; timeoutMs?: number; dispatcher?: unknown } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...init.headers };
  let payload: string | undefined;
  if (init.raw !== undefined) payload = init.raw;
  else if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(base + path, {
    method,
    headers,
    body: payload,
    ...(init.timeoutMs !== undefined ? { signal: AbortSignal.timeout(init.timeoutMs) } : {}),
    // An undici dispatcher (e.g. one that trusts a test CA for HTTPS); Node's fetch takes it.
    ...(init.dispatcher !== undefined ? ({ dispatcher: init.dispatcher } as object) : {}),
  });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** `api`, but a 3xx, 4xx or 5xx is an error: for setting up what a test needs. */
export async function apiOk(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const r = await api(base, method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.body)}`);
  return r;
}

/** Polls `check` until it returns a truthy value or the deadline passes. No sleeps to wait for state. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Ports this process has handed out: a port is given once, so two of our own listeners never meet. */
const portsHandedOut = new Set<number>();

/**
 * Free loopback ports, found by binding port 0, never one handed out before in this process. The
 * ports are released before the caller binds them, and the kernel may offer a released port to the
 * next bind of port 0: a test's own helper servers (proxies) must take theirs here too, not bind 0
 * (a TCP proxy once took a node's Raft port that way, and the node failed to start).
 */
export async function freePorts(n: number): Promise<number[]> {
  const { createServer } = await import('node:net');
  const ports: number[] = [];
  const servers: import('node:net').Server[] = [];
  // Bounded: a port already handed out is skipped (its probe stays bound meanwhile, so it is not offered again).
  for (let tries = 0; ports.length < n && tries < n + 1000; tries++) {
    const s = await new Promise<import('node:net').Server>((res) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => res(server));
    });
    servers.push(s);
    const port = (s.address() as import('node:net').AddressInfo).port;
    if (portsHandedOut.has(port)) continue;
    portsHandedOut.add(port);
    ports.push(port);
  }
  await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
  if (ports.length < n) throw new Error(`found ${ports.length} of ${n} free ports`);
  return ports;
}

export interface ClusterNodeSpec {
  id: number;
  httpPort: number;
  raftPort: number;
  dataDir: string;
}

/** A local cluster of real node processes; `peerRaftPort` lets a test route a node's peers through proxies. */
export class TestCluster {
  readonly nodes = new Map<number, HeraldProcess>();
  readonly secret = 'test-cluster-secret-0123456789';
  /** Flags every node gets (e.g. a small --snapshot-entries). */
  extraArgs: string[] = [];
  /** Environment every node gets. */
  env: Record<string, string> = {};
  /** Nodes being started (see stopAll). */
  private readonly starting = new Set<Promise<HeraldProcess>>();
  /** A bearer token for the cluster's own checks (leader()), when the nodes run with --auth on. */
  authToken: string | undefined;
  /** 'https' when the nodes run with TLS; `dispatcher` then trusts their CA. */
  scheme: 'http' | 'https' = 'http';
  dispatcher: unknown;
  constructor(readonly specs: ClusterNodeSpec[]) {}

  static async create(size: number): Promise<TestCluster> {
    const ports = await freePorts(size * 2);
    return new TestCluster(
      Array.from({ length: size }, (_, i) => ({ id: i + 1, httpPort: ports[2 * i]!, raftPort: ports[2 * i + 1]!, dataDir: tempDataDir(`herald-node${i + 1}-`) })),
    );
  }

  peersArg(raftPortOf: (spec: ClusterNodeSpec) => number = (s) => s.raftPort, ids?: number[]): string {
    return this.specs
      .filter((s) => !ids || ids.includes(s.id))
      .map((s) => `${s.id}@127.0.0.1:${raftPortOf(s)}:${s.httpPort}`)
      .join(',');
  }

  /** "host:raftPort:httpPort", as POST /v1/cluster/members takes it. */
  address(id: number): string {
    const s = this.specs.find((x) => x.id === id)!;
    return `127.0.0.1:${s.raftPort}:${s.httpPort}`;
  }

  async start(id: number, peers = this.peersArg(), extraArgs: string[] = this.extraArgs): Promise<HeraldProcess> {
    const s = this.specs.find((x) => x.id === id)!;
    const started = startHerald({
      dataDir: s.dataDir,
      env: { HERALD_CLUSTER_SECRET: this.secret, ...this.env },
      args: ['--node-id', String(id), '--raft-port', String(s.raftPort), '--peers', peers, '--port', String(s.httpPort), ...extraArgs],
    }).then((p) => {
      this.nodes.set(id, p);
      return p;
    });
    this.starting.add(started);
    try {
      return await started;
    } finally {
      this.starting.delete(started);
    }
  }

  async startAll(ids = this.specs.map((s) => s.id)): Promise<void> {
    const peers = this.peersArg(undefined, ids);
    await Promise.all(ids.map((id) => this.start(id, peers)));
  }

  url(id: number): string {
    return `${this.scheme}://127.0.0.1:${this.specs.find((x) => x.id === id)!.httpPort}`;
  }

  /** The leader as a majority of the running nodes see it, polled until there is one. */
  async leader(timeoutMs = 10_000): Promise<number> {
    return eventually<number | undefined>(async () => {
      const views = await Promise.all(
        [...this.nodes.keys()].map(async (id) => {
          try {
            const headers: Record<string, string> = this.authToken ? { authorization: `Bearer ${this.authToken}` } : {};
            return (await api(this.url(id), 'GET', '/v1/cluster', undefined, { headers, dispatcher: this.dispatcher })).body.leaderId as string | null;
          } catch {
            return null;
          }
        }),
      );
      const counts = new Map<string, number>();
      for (const v of views) if (v) counts.set(v, (counts.get(v) ?? 0) + 1);
      for (const [id, c] of counts) if (c > this.nodes.size / 2 && this.nodes.has(Number(id))) return Number(id);
      return undefined;
    }, timeoutMs, 50) as Promise<number>;
  }

  async kill(id: number): Promise<void> {
    await this.nodes.get(id)?.kill();
    this.nodes.delete(id);
  }

  async stopAll(): Promise<void> {
    // A start still in flight (its siblings' failure ended the test first) is waited for, then stopped
    // with the rest: otherwise the process outlives the test run.
    await Promise.allSettled([...this.starting]);
    await Promise.all([...this.nodes.values()].map((n) => n.kill()));
    this.nodes.clear();
    for (const s of this.specs) removeDataDir(s.dataDir);
  }
}
