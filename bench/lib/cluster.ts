/**
 * Herald nodes for the cluster benchmark, as real child processes started from the esbuild bundle
 * (`dist/main.js`, built once by `buildBundle()`), with the same node flags and environment as
 * `startServer` in server.ts: a single node (`startNode`, any extra flags such as `--durability
 * relaxed`) and a local 3-node group on free loopback ports (`startCluster`) whose members can be
 * killed with SIGKILL and started again on the same data. Only 127.0.0.1 is ever used.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { performance } from 'node:perf_hooks';
import { nodeProcessEnv } from '../../src/runtime/process-env.js';
import { Client } from './http.js';
import { cpuSecondsOf, serverRoot, tempDir } from './server.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function buildBundle(): void {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: serverRoot, stdio: 'inherit' });
}

/** Free loopback ports, found by binding port 0 (all held open together, so they differ). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** One running node process. */
export interface NodeProcess {
  url: string;
  pid: number;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True once the process has exited (for whatever reason). */
  gone(): boolean;
}

/**
 * Spawns `node --enable-source-maps --expose-gc dist/main.js ...args` and waits for its listening
 * line. Everything it prints is appended to `log` (a per-node transcript kept across restarts).
 */
export async function spawnNode(args: string[], env: Record<string, string>, log: { text: string }, timeoutMs = 60_000): Promise<NodeProcess> {
  // BENCH_NODE_FLAGS adds Node flags to every server process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn(process.execPath, ['--enable-source-maps', '--expose-gc', ...nodeFlags, 'dist/main.js', ...args], {
    cwd: serverRoot,
    env: { ...process.env, ...nodeProcessEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let own = '';
  const append = (d: Buffer) => {
    const s = d.toString();
    own += s;
    log.text += s;
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  let isGone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => {
      isGone = true;
      log.text += `[bench] process ${child.pid} exited (${signal ?? code})\n`;
      r({ code, signal });
    }),
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start within ${timeoutMs / 1000} s:\n${own.slice(-3000)}`)), timeoutMs);
    const onData = () => {
      const m = /herald listening on (http:\/\/\S+)/.exec(own);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolveUrl(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`herald exited (${signal ?? code}) before listening:\n${own.slice(-3000)}`));
    });
  }).catch((e) => {
    if (!isGone) child.kill('SIGKILL');
    throw e;
  });
  return { url, pid: child.pid!, child, exited, gone: () => isGone };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopNode(p: NodeProcess, graceMs = 30_000): Promise<void> {
  if (p.gone()) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!p.gone()) p.child.kill('SIGKILL');
  }, graceMs);
  await p.exited;
  clearTimeout(timer);
}

export interface SingleNode {
  url: string;
  pid: number;
  log: { text: string };
  proc: NodeProcess;
  stop(): Promise<void>;
}

/** One node as `startServer` runs it (`--port 0 --data <fresh dir>`), plus `extraArgs`. */
export async function startNode(extraArgs: string[] = []): Promise<SingleNode> {
  const dataDir = tempDir('herald-bench-');
  const log = { text: '' };
  let proc: NodeProcess;
  try {
    proc = await spawnNode(['--port', '0', '--data', dataDir, ...extraArgs], {}, log);
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    url: proc.url,
    pid: proc.pid,
    log,
    proc,
    async stop() {
      await stopNode(proc);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ClusterMember {
  id: number;
  httpPort: number;
  raftPort: number;
  dataDir: string;
  url: string;
  log: { text: string };
  proc: NodeProcess | undefined;
  /** Exits we did not cause (crashes), with the time. */
  unexpectedExits: string[];
  /** Set while we kill or stop it on purpose. */
  expectingExit: boolean;
}

export interface ClusterView {
  nodeId: string;
  leaderId: string | null;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: { id: string; address: string; role: string; matchIndex: number }[];
}

/** A JSON GET/POST with a time limit, through a Client's pool; never throws (status 0 = transport error). */
export async function timedCall(
  client: Client,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body: string | undefined,
  timeoutMs: number,
): Promise<{ status: number; body: any; error?: string }> {
  try {
    const res = await client.pool.request({
      method,
      path,
      headers: body !== undefined ? { 'content-type': 'application/json' } : {},
      ...(body !== undefined ? { body } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    let parsed: any = text;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      /* keep the text */
    }
    return { status: res.statusCode, body: parsed };
  } catch (e) {
    const err = e as { code?: string; name?: string; message?: string };
    return { status: 0, body: undefined, error: err.code ?? err.name ?? String(e) };
  }
}

export class BenchCluster {
  readonly secret = randomBytes(24).toString('base64url');
  /** Small clients for control calls (cluster views, readiness), one per member. */
  private readonly control = new Map<number, Client>();

  private constructor(
    readonly members: ClusterMember[],
    readonly extraArgs: string[],
  ) {}

  static async start(size: number, extraArgs: string[] = []): Promise<BenchCluster> {
    const ports = await freePorts(size * 2);
    const members: ClusterMember[] = Array.from({ length: size }, (_, i) => ({
      id: i + 1,
      httpPort: ports[2 * i]!,
      raftPort: ports[2 * i + 1]!,
      dataDir: tempDir(`herald-bench-node${i + 1}-`),
      url: `http://127.0.0.1:${ports[2 * i]!}`,
      log: { text: '' },
      proc: undefined,
      unexpectedExits: [],
      expectingExit: false,
    }));
    const c = new BenchCluster(members, extraArgs);
    for (const m of members) c.control.set(m.id, new Client(m.url, 2));
    try {
      await Promise.all(members.map((m) => c.startMember(m.id)));
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  /**
   * Starts a cluster and waits for its leader. A cluster that never agrees on one is stopped here:
   * nothing else holds it to stop it later, and its nodes would load every run after.
   */
  static async startLed(size: number, extraArgs: string[] = [], timeoutMs = 30_000): Promise<{ cluster: BenchCluster; leader: number }> {
    const cluster = await BenchCluster.start(size, extraArgs);
    try {
      return { cluster, leader: await cluster.waitLeader(timeoutMs) };
    } catch (e) {
      await cluster.stop();
      throw e;
    }
  }

  get peers(): string {
    return this.members.map((m) => `${m.id}@127.0.0.1:${m.raftPort}:${m.httpPort}`).join(',');
  }

  member(id: number): ClusterMember {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  /** Starts (or restarts, on the same data) member `id` and waits for its listening line. */
  async startMember(id: number): Promise<void> {
    const m = this.member(id);
    m.expectingExit = false;
    m.log.text += `[bench] ${new Date().toISOString()} starting node ${id}\n`;
    const proc = await spawnNode(
      ['--node-id', String(id), '--host', '127.0.0.1', '--port', String(m.httpPort), '--raft-port', String(m.raftPort), '--peers', this.peers, '--data', m.dataDir, ...this.extraArgs],
      { HERALD_CLUSTER_SECRET: this.secret },
      m.log,
    );
    m.proc = proc;
    void proc.exited.then(({ code, signal }) => {
      if (!m.expectingExit) m.unexpectedExits.push(`${new Date().toISOString()} node ${id} (pid ${proc.pid}) exited unexpectedly (${signal ?? code})`);
    });
  }

  /** SIGKILL member `id`; returns performance.now() just before the signal. */
  kill(id: number): number {
    const m = this.member(id);
    if (!m.proc || m.proc.gone()) throw new Error(`node ${id} is not running`);
    m.expectingExit = true;
    m.log.text += `[bench] ${new Date().toISOString()} kill -9 node ${id}\n`;
    const t = performance.now();
    process.kill(m.proc.pid, 'SIGKILL');
    return t;
  }

  async waitExit(id: number): Promise<void> {
    const m = this.member(id);
    if (m.proc) await m.proc.exited;
  }

  running(): ClusterMember[] {
    return this.members.filter((m) => m.proc && !m.proc.gone());
  }

  async view(id: number, timeoutMs = 2000): Promise<ClusterView | undefined> {
    const r = await timedCall(this.control.get(id)!, 'GET', '/v1/cluster', undefined, timeoutMs);
    return r.status === 200 ? (r.body as ClusterView) : undefined;
  }

  /**
   * Polls until every running member names the same leader, that leader is running and answers
   * /readyz 200; returns its id. Throws after `timeoutMs`.
   */
  async waitLeader(timeoutMs = 30_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let last: (ClusterView | undefined)[] = [];
    for (let i = 0; i < 10_000 && performance.now() < deadline; i++) {
      const live = this.running();
      last = await Promise.all(live.map((m) => this.view(m.id)));
      const leaders = new Set(last.map((v) => v?.leaderId ?? null));
      if (leaders.size === 1) {
        const leader = Number([...leaders][0]);
        if (leader && live.some((m) => m.id === leader)) {
          const ready = await timedCall(this.control.get(leader)!, 'GET', '/readyz', undefined, 2000);
          if (ready.status === 200) return leader;
        }
      }
      await sleep(50);
    }
    throw new Error(`no agreed leader within ${timeoutMs} ms: ${JSON.stringify(last.map((v) => v && { node: v.nodeId, leader: v.leaderId, term: v.term, commit: v.commitIndex, applied: v.appliedIndex }))}`);
  }

  /** The leader a running member names now (undefined if none answers or names none). */
  async leaderNow(): Promise<number | undefined> {
    for (const m of this.running()) {
      const v = await this.view(m.id);
      if (v?.leaderId) return Number(v.leaderId);
    }
    return undefined;
  }

  /**
   * Polls until every running member has applied the same index, equal to its commit index, with the
   * same state digest (GET /v1/cluster?digest=1) and the same leader. Undefined when they converge,
   * else a description of the last views.
   */
  async converged(timeoutMs = 30_000): Promise<string | undefined> {
    const deadline = performance.now() + timeoutMs;
    let last: (ClusterView & { stateDigest?: string } | undefined)[] = [];
    for (let i = 0; i < 10_000 && performance.now() < deadline; i++) {
      const live = this.running();
      last = await Promise.all(
        live.map(async (m) => {
          const r = await timedCall(this.control.get(m.id)!, 'GET', '/v1/cluster?digest=1', undefined, 10_000);
          return r.status === 200 ? r.body : undefined;
        }),
      );
      const ok =
        last.length === this.members.length &&
        last.every((v) => v !== undefined && v.leaderId !== null && v.appliedIndex === v.commitIndex) &&
        new Set(last.map((v) => v!.appliedIndex)).size === 1 &&
        new Set(last.map((v) => v!.stateDigest)).size === 1 &&
        new Set(last.map((v) => v!.leaderId)).size === 1;
      if (ok) return undefined;
      await sleep(200);
    }
    return `replicas did not converge within ${timeoutMs} ms: ${JSON.stringify(
      last.map((v) => v && { node: v.nodeId, leader: v.leaderId, term: v.term, commit: v.commitIndex, applied: v.appliedIndex, digest: v.stateDigest?.slice(0, 12) }),
    )}`;
  }

  /** Polls until member `id` is ready and has applied at least the leader's commit index as of now. */
  async waitCaughtUp(id: number, leaderId: number, timeoutMs = 60_000): Promise<{ ms: number; target: number }> {
    const t0 = performance.now();
    const target = (await this.view(leaderId))?.commitIndex ?? 0;
    const deadline = t0 + timeoutMs;
    for (let i = 0; i < 100_000 && performance.now() < deadline; i++) {
      const r = await timedCall(this.control.get(id)!, 'GET', '/readyz', undefined, 2000);
      if (r.status === 200 && r.body.appliedIndex >= target) return { ms: performance.now() - t0, target };
      await sleep(50);
    }
    throw new Error(`node ${id} did not catch up to index ${target} within ${timeoutMs} ms`);
  }

  /** User+sys CPU seconds of every running member, by id. */
  cpu(): Map<number, number> {
    const out = new Map<number, number>();
    for (const m of this.running()) {
      try {
        out.set(m.id, cpuSecondsOf(m.proc!.pid));
      } catch {
        /* gone */
      }
    }
    return out;
  }

  /** Lines the members printed beyond their listening/stopping lines and our own markers. */
  unusualOutput(maxLines = 30): string[] {
    const out: string[] = [];
    for (const m of this.members) {
      const lines = m.log.text.split('\n').filter((l) => l && !/herald listening on|SIGTERM, stopping|^\[bench\]/.test(l));
      for (const l of lines.slice(0, maxLines)) out.push(`node ${m.id}: ${l}`);
      if (lines.length > maxLines) out.push(`node ${m.id}: ... ${lines.length - maxLines} more lines`);
    }
    return out;
  }

  crashes(): string[] {
    return this.members.flatMap((m) => m.unexpectedExits);
  }

  async stop(keepData = false): Promise<void> {
    for (const c of this.control.values()) await c.close().catch(() => {});
    await Promise.all(
      this.members.map(async (m) => {
        if (!m.proc) return;
        m.expectingExit = true;
        await stopNode(m.proc);
      }),
    );
    if (!keepData) for (const m of this.members) rmSync(m.dataDir, { recursive: true, force: true });
  }
}
