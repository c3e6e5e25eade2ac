/**
 * 3-node cluster benchmark (`npx tsx bench/cluster.ts [flags]`), against one node measured in the same run.
 *
 * Every scenario gets fresh processes and data dirs: a single node (`dist/main.js --port 0 --data
 * DIR`) or a local 3-node group on free 127.0.0.1 ports (`--node-id I --port P --raft-port R --peers
 * ... --data DIR`, HERALD_CLUSTER_SECRET), built once from the esbuild bundle. The load generator is
 * this process (undici Pool, keep-alive), as in bench/single-node.ts, with the same parameters. Load
 * goes to the leader's HTTP port (found with GET /v1/cluster); with --via-follower, (a) is also run
 * through a follower (which forwards every call to the leader over HTTP). 1 KiB messages.
 *
 *   (a) produce only: batches of 16, 64 requests in flight
 *   (b) consume only: a 200,000-message backlog (pre-filled in batches of 500, 8 in flight), drained
 *       by 8 pullers (pull max 500, then ack)
 *   (c) both: 32 publishers (batches of 16, stamped) + 8 long-polling pullers (waitSeconds 1), then drain
 *   (d) failover (cluster only): a light publish load (--failover-workers publishers, one 1 KiB message
 *       each with a dedupId, --failover-pause-ms between publishes, retried every 20 ms on 503 and
 *       transport errors, rotating through the nodes); kill -9 the leader; the failover time is from
 *       the kill to the first publish *sent after the kill* that is answered 2xx. The killed node is
 *       then restarted on its data and waited for until it has caught up; --failovers times.
 * Each of (a)–(c) runs on one node and on 3 nodes; the table gives the 3-node/1-node ratio.
 *
 * Flags (env BENCH_<NAME> works too, flags win):
 *   --seconds N          measured seconds of (a) and (c), after --warmup (default 10, warm-up 1, as single-node.ts)
 *   --durability M       sync, relaxed or both (default both): fsync before acknowledging, or not
 *   --phases list        single-a,single-b,single-c,a,b,c,d (default all)
 *   --via-follower       also run (a) through a follower (default on; --no-via-follower to skip)
 *   --concurrency N      produce requests in flight in (a) (default 64)
 *   --messages N         backlog of (b) (default 200000)
 *   --pullers N, --pull-max N, --mixed-producers N, --consume-seconds N, --size N  as in single-node.ts
 *   --failovers N        leader kills in (d) (default 3)
 *   --failover-workers N, --failover-pause-ms N  the light load of (d) (default 4 and 20)
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { BenchCluster, buildBundle, startNode, timedCall, type SingleNode } from './lib/cluster.js';
import { Client } from './lib/http.js';
import { consume, payload, produce, type Abort } from './lib/load.js';
import { cpuSecondsOf, serverVersion } from './lib/server.js';
import { fmtMs, fmtNum, Samples, table } from './lib/stats.js';
import { numberFlag } from './lib/flags.js';
import { stepMeter } from './lib/steps.js';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    durability: { type: 'string' },
    phases: { type: 'string' },
    'via-follower': { type: 'boolean' },
    'no-via-follower': { type: 'boolean' },
    concurrency: { type: 'string' },
    messages: { type: 'string' },
    pullers: { type: 'string' },
    'pull-max': { type: 'string' },
    'mixed-producers': { type: 'string' },
    'consume-seconds': { type: 'string' },
    size: { type: 'string' },
    failovers: { type: 'string' },
    'failover-workers': { type: 'string' },
    'failover-pause-ms': { type: 'string' },
  },
  allowPositionals: false,
});

function opt(name: keyof typeof flags, fallback: number): number {
  return numberFlag(flags, name, fallback);
}

const allPhases = ['single-a', 'single-b', 'single-c', 'a', 'b', 'c', 'd'];
const durabilityFlag = (flags.durability as string | undefined) ?? process.env.BENCH_DURABILITY ?? 'both';
if (!['sync', 'relaxed', 'both'].includes(durabilityFlag)) throw new Error(`--durability is sync, relaxed or both, not ${durabilityFlag}`);
const cfg = {
  seconds: opt('seconds', 10),
  warmup: opt('warmup', 1),
  durability: durabilityFlag,
  concurrency: Math.max(1, Math.round(opt('concurrency', 64))),
  messages: Math.max(1, Math.round(opt('messages', 200_000))),
  pullers: Math.max(1, Math.round(opt('pullers', 8))),
  pullMax: Math.min(1000, Math.max(1, Math.round(opt('pull-max', 500)))),
  mixedProducers: Math.max(1, Math.round(opt('mixed-producers', 32))),
  consumeSeconds: opt('consume-seconds', 60),
  size: Math.max(16, Math.round(opt('size', 1024))),
  failovers: Math.max(1, Math.round(opt('failovers', 3))),
  failoverWorkers: Math.max(1, Math.round(opt('failover-workers', 4))),
  failoverPauseMs: opt('failover-pause-ms', 20),
  viaFollower: !(flags['no-via-follower'] || process.env.BENCH_VIA_FOLLOWER === '0'),
  phases: ((flags.phases as string | undefined) ?? process.env.BENCH_PHASES ?? allPhases.join(',')).split(',').map((s) => s.trim()),
};
for (const p of cfg.phases) if (!allPhases.includes(p)) throw new Error(`unknown phase ${p} (known: ${allPhases.join(',')})`);
const modes: ('sync' | 'relaxed')[] = cfg.durability === 'both' ? ['sync', 'relaxed'] : [cfg.durability as 'sync' | 'relaxed'];

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------
// Results

interface Row {
  mode: string;
  scenario: string;
  nodes: string;
  messages: string;
  rate: number | undefined;
  latencyOf: string;
  p50: string;
  p99: string;
  max: string;
  ratio: string;
  errors: string;
  serverCpu: string;
  benchCpu: string;
  /** Key for the ratio: the same key on 1 node and 3 nodes. */
  key?: string;
}
const rows: Row[] = [];
const notes: string[] = [];
const failoverRounds: {
  mode: string;
  round: number;
  killed: number;
  newLeader: number;
  term: number;
  failoverMs: number;
  lastOkBeforeMs: number;
  errorsInGap: string;
  restartMs: number;
  catchUpMs: number;
  catchUpTarget: number;
}[] = [];

function row(mode: string, scenario: string, nodes: string, messages: number | undefined, rate: number | undefined, what: string, s: Samples | undefined, extra: Partial<Row> = {}): Row {
  const [p50, p99] = s ? s.percentiles(50, 99) : [NaN, NaN];
  const r: Row = {
    mode,
    scenario,
    nodes,
    messages: messages === undefined ? '' : fmtNum(messages),
    rate,
    latencyOf: s ? `${what} (n=${fmtNum(s.count)})` : what,
    p50: s ? fmtMs(p50!) : '',
    p99: s ? fmtMs(p99!) : '',
    max: s ? fmtMs(s.max()) : '',
    ratio: '',
    errors: '',
    serverCpu: '',
    benchCpu: '',
    ...extra,
  };
  rows.push(r);
  return r;
}

// ---------------------------------------------------------------------------------------------------
// Targets: a single node or a cluster, seen the same way by the scenarios

interface Target {
  /** "1" or "3 (via leader n1)". */
  nodesLabel: string;
  url: string;
  abort: Abort;
  /** CPU seconds of the server processes: total and per process label. */
  cpu(): Map<string, number>;
  /** The server processes' base URLs by the same labels (for their /metrics). */
  nodes(): Map<string, string>;
  /** Problems to report (crashes, unusual output, divergence); called after the scenario. */
  check(): Promise<string[]>;
  stop(): Promise<void>;
}

function watch(abort: Abort, isGone: () => string | undefined): NodeJS.Timeout {
  return setInterval(() => {
    const why = isGone();
    if (why && !abort.aborted) {
      abort.aborted = true;
      abort.reason = why;
    }
  }, 250);
}

async function singleTarget(mode: 'sync' | 'relaxed'): Promise<Target> {
  const node: SingleNode = await startNode(mode === 'relaxed' ? ['--durability', 'relaxed'] : []);
  const abort: Abort = { aborted: false };
  const timer = watch(abort, () => (node.proc.gone() ? `the node (pid ${node.pid}) exited` : undefined));
  return {
    nodesLabel: '1',
    url: node.url,
    abort,
    cpu: () => new Map([['node', node.proc.gone() ? NaN : cpuSecondsOf(node.pid)]]),
    nodes: () => new Map([['node', node.url]]),
    async check() {
      const out: string[] = [];
      if (abort.aborted) out.push(`aborted: ${abort.reason}; output:\n${node.log.text.slice(-2000)}`);
      const lines = node.log.text.split('\n').filter((l) => l && !/herald listening on|SIGTERM, stopping|^\[bench\]/.test(l));
      if (lines.length > 0) out.push(`the node printed:\n${lines.slice(0, 20).join('\n')}`);
      return out;
    },
    async stop() {
      clearInterval(timer);
      await node.stop();
    },
  };
}

interface ClusterTarget extends Target {
  cluster: BenchCluster;
  leader: number;
}

async function clusterTarget(mode: 'sync' | 'relaxed', via: 'leader' | 'follower' = 'leader'): Promise<ClusterTarget> {
  const t0 = performance.now();
  const { cluster, leader } = await BenchCluster.startLed(3, mode === 'relaxed' ? ['--durability', 'relaxed'] : []);
  const entry = via === 'leader' ? leader : cluster.members.find((m) => m.id !== leader)!.id;
  console.error(`  3 nodes up, leader n${leader}, in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  const abort: Abort = { aborted: false };
  const timer = watch(abort, () => cluster.crashes()[0]);
  /** L for the leader, F<id> for a follower: how the tables and notes name a node. */
  const roleLabel = (id: number) => (id === leader ? 'L' : `F${id}`);
  return {
    cluster,
    leader,
    nodesLabel: via === 'leader' ? `3 via leader` : `3 via follower`,
    url: cluster.member(entry).url,
    abort,
    cpu() {
      const m = new Map<string, number>();
      for (const [id, s] of cluster.cpu()) m.set(roleLabel(id), s);
      return m;
    },
    nodes() {
      return new Map(cluster.members.map((m) => [roleLabel(m.id), m.url]));
    },
    async check() {
      const out: string[] = [];
      for (const c of cluster.crashes()) out.push(c);
      if (abort.aborted) {
        for (const m of cluster.members) out.push(`node ${m.id} output (last 2000 chars):\n${m.log.text.slice(-2000)}`);
      }
      const unusual = cluster.unusualOutput();
      if (unusual.length > 0) out.push(`nodes printed:\n${unusual.join('\n')}`);
      const now = await cluster.leaderNow();
      if (now !== undefined && now !== leader) out.push(`leadership moved during the scenario: n${leader} → n${now}`);
      const conv = await cluster.converged(30_000);
      if (conv) out.push(conv);
      return out;
    },
    async stop() {
      clearInterval(timer);
      await cluster.stop();
    },
  };
}

/** CPU use in % of one core over a window, for the server processes and this process, and what the
 * nodes' storage steps did meanwhile (lib/steps.ts). */
async function serverMeter(target: Target) {
  const steps = await stepMeter(target.nodes());
  const s0 = target.cpu();
  const b0 = process.cpuUsage();
  const t0 = performance.now();
  return async () => {
    const wall = (performance.now() - t0) / 1000;
    const s1 = target.cpu();
    let total = 0;
    const parts: string[] = [];
    for (const [k, v] of s1) {
      const d = v - (s0.get(k) ?? NaN);
      total += d;
      parts.push(`${k} ${Math.round((100 * d) / wall)}`);
    }
    const b = process.cpuUsage(b0);
    return {
      server: s1.size > 1 ? `${Math.round((100 * total) / wall)}% (${parts.join(', ')})` : `${Math.round((100 * total) / wall)}%`,
      bench: `${Math.round((100 * (b.user + b.system)) / 1e6 / wall)}%`,
      /** Per node: steps a second, mean step, entries per step, mean LMDB commit. */
      steps: await steps(),
    };
  };
}

async function withTarget(label: string, make: () => Promise<Target>, body: (t: Target, client: Client) => Promise<void>, connections: number): Promise<void> {
  let target: Target;
  try {
    target = await make();
  } catch (e) {
    notes.push(`${label}: could not start: ${(e as Error).message}`);
    console.error(`  could not start: ${(e as Error).message}`);
    return;
  }
  const client = new Client(target.url, connections);
  try {
    await body(target, client);
  } catch (e) {
    notes.push(`${label}: failed: ${(e as Error).stack ?? e}`);
    console.error(`  failed: ${(e as Error).message}`);
  } finally {
    await client.close().catch(() => {});
    const problems = await target.check().catch((e) => [`check failed: ${(e as Error).message}`]);
    for (const p of problems) notes.push(`${label}: ${p}`);
    await target.stop().catch((e) => notes.push(`${label}: stop failed: ${(e as Error).message}`));
  }
}

// ---------------------------------------------------------------------------------------------------
// Scenarios (a)–(c): the same parameters as bench/single-node.ts

async function scenarioProduce(mode: string, target: Target, client: Client, key: string, scenario: string): Promise<void> {
  const topic = `bench-produce-${key.replace(/[^a-z0-9]/g, '')}`;
  await client.ok('PUT', `/v1/topics/${topic}`, {});
  await client.ok('PUT', `/v1/subscriptions/${topic}-sub`, { topic, startAt: 'earliest' });
  const meter = await serverMeter(target);
  const r = await produce(client, {
    path: `/v1/topics/${topic}/messages`,
    batch: 16,
    size: cfg.size,
    concurrency: cfg.concurrency,
    seconds: cfg.seconds,
    warmupSeconds: cfg.warmup,
    maxRequests: 50_000_000,
    abort: target.abort,
  });
  const c = await meter();
  const rate = r.measuredMessages / r.measuredSeconds;
  const info = await client.ok('GET', `/v1/topics/${topic}`);
  row(mode, scenario, target.nodesLabel, r.measuredMessages, rate, 'POST round trip', r.latency, {
    key: 'a',
    errors: String(r.errors.total + r.badResults),
    serverCpu: c.server,
    benchCpu: c.bench,
  });
  notes.push(`${mode} ${scenario} [${target.nodesLabel}]: storage steps (a second, mean, entries each): ${c.steps}`);
  if (r.errors.total > 0) notes.push(`${mode} ${scenario} [${target.nodesLabel}]: errors: ${r.errors.summary()}`);
  if (r.badResults > 0) notes.push(`${mode} ${scenario} [${target.nodesLabel}]: ${r.badResults} 2xx answers without one result per message`);
  if (info.messages !== r.totalMessages) {
    notes.push(`${mode} ${scenario} [${target.nodesLabel}]: published ${r.totalMessages} (2xx) but the topic reports ${info.messages} (lastSeq ${info.lastSeq})`);
  }
  console.error(`  ${fmtNum(rate)} msg/s, p50 ${fmtMs(r.latency.percentiles(50)[0]!)} ms; ${fmtNum(r.totalMessages)} in all, topic holds ${fmtNum(info.messages)}; CPU ${c.server}, bench ${c.bench}`);
}

async function scenarioConsume(mode: string, target: Target, client: Client): Promise<void> {
  const topic = 'bench-consume';
  const sub = `${topic}-sub`;
  const scenario = `(b) consume+ack, ${cfg.pullers} pullers, max ${cfg.pullMax}`;
  await client.ok('PUT', `/v1/topics/${topic}`, {});
  await client.ok('PUT', `/v1/subscriptions/${sub}`, { topic, startAt: 'earliest' });
  const fill = await produce(client, {
    path: `/v1/topics/${topic}/messages`,
    batch: 500,
    size: cfg.size,
    concurrency: 8,
    seconds: 120,
    warmupSeconds: 0,
    maxRequests: Math.ceil(cfg.messages / 500) + 10_000,
    maxMessages: cfg.messages,
    abort: target.abort,
  });
  const fillRate = fill.totalMessages / fill.measuredSeconds;
  row(mode, '(b0) pre-fill, batch 500, 8 in flight', target.nodesLabel, fill.totalMessages, fillRate, 'POST round trip', fill.latency, {
    key: 'b0',
    errors: String(fill.errors.total + fill.badResults),
  });
  if (fill.errors.total > 0) notes.push(`${mode} (b0) [${target.nodesLabel}]: errors: ${fill.errors.summary()}`);
  const before = await client.ok('GET', `/v1/subscriptions/${sub}`);
  if (before.backlog !== fill.totalMessages) notes.push(`${mode} (b) [${target.nodesLabel}]: after pre-fill the backlog is ${before.backlog}, expected ${fill.totalMessages}`);
  console.error(`  pre-filled ${fmtNum(fill.totalMessages)} at ${fmtNum(fillRate)} msg/s; draining (limit ${cfg.consumeSeconds}s)`);
  const target_ = fill.totalMessages;
  const meter = await serverMeter(target);
  const r = await consume(client, {
    subPath: `/v1/subscriptions/${sub}`,
    pullers: cfg.pullers,
    pullMax: cfg.pullMax,
    waitSeconds: 0,
    target: () => target_,
    deadline: performance.now() + cfg.consumeSeconds * 1000,
    maxPulls: 10_000_000,
    abort: target.abort,
  });
  const c = await meter();
  const secs = Math.max(0.001, (r.lastAckAt - r.startedAt) / 1000);
  const rate = r.acked / secs;
  const after = await client.ok('GET', `/v1/subscriptions/${sub}`);
  row(mode, scenario, target.nodesLabel, r.acked, rate, 'pull round trip', r.pullLatency, {
    key: 'b',
    errors: String(r.errors.total),
    serverCpu: c.server,
    benchCpu: c.bench,
  });
  row(mode, '', '', undefined, undefined, 'ack round trip', r.ackLatency);
  const tag = `${mode} (b) [${target.nodesLabel}]`;
  notes.push(`${tag}: storage steps (a second, mean, entries each): ${c.steps}`);
  if (r.errors.total > 0) notes.push(`${tag}: errors: ${r.errors.summary()}`);
  if (r.distinct < target_) notes.push(`${tag}: only ${fmtNum(r.distinct)} of ${fmtNum(target_)} messages received within ${cfg.consumeSeconds}s`);
  if (r.duplicates > 0) notes.push(`${tag}: ${r.duplicates} duplicate deliveries`);
  if (r.invalidAcks > 0) notes.push(`${tag}: ${r.invalidAcks} ackIds answered as invalid`);
  if (after.backlog !== target_ - r.acked) notes.push(`${tag}: after the drain the backlog is ${after.backlog} (acked ${r.acked} of ${target_})`);
  console.error(`  acked ${fmtNum(r.acked)} in ${secs.toFixed(1)}s = ${fmtNum(rate)} msg/s; backlog now ${after.backlog}; CPU ${c.server}, bench ${c.bench}`);
}

async function scenarioMixed(mode: string, target: Target, client: Client): Promise<void> {
  const topic = 'bench-mixed';
  const sub = `${topic}-sub`;
  const label = `(c) produce b16 ×${cfg.mixedProducers} + ${cfg.pullers} pullers max ${cfg.pullMax}`;
  await client.ok('PUT', `/v1/topics/${topic}`, {});
  await client.ok('PUT', `/v1/subscriptions/${sub}`, { topic, startAt: 'earliest' });
  const meter = await serverMeter(target);
  let producing = true;
  let produced = 0;
  const t0 = performance.now();
  const producer = produce(client, {
    path: `/v1/topics/${topic}/messages`,
    batch: 16,
    size: cfg.size,
    concurrency: cfg.mixedProducers,
    seconds: cfg.seconds,
    warmupSeconds: cfg.warmup,
    maxRequests: 50_000_000,
    stamp: true,
    abort: target.abort,
  }).then((r) => {
    producing = false;
    produced = r.totalMessages;
    return r;
  });
  const drainSeconds = 30;
  const consumer = consume(client, {
    subPath: `/v1/subscriptions/${sub}`,
    pullers: cfg.pullers,
    pullMax: cfg.pullMax,
    waitSeconds: 1,
    target: () => (producing ? Infinity : produced),
    deadline: t0 + (cfg.warmup + cfg.seconds + drainSeconds) * 1000,
    maxPulls: 10_000_000,
    abort: target.abort,
    stamped: true,
  });
  const p = await producer;
  const produceEnd = performance.now();
  const c = await meter();
  const r = await consumer;
  const warmEnd = t0 + cfg.warmup * 1000;
  let ackedInWindow = 0;
  for (const [t, n] of r.ackTimeline) if (t >= warmEnd && t <= produceEnd) ackedInWindow += n;
  const windowSecs = Math.max(0.001, (produceEnd - warmEnd) / 1000);
  const pRate = p.measuredMessages / p.measuredSeconds;
  const cRate = ackedInWindow / windowSecs;
  const after = await client.ok('GET', `/v1/subscriptions/${sub}`);
  row(mode, `${label}: produced`, target.nodesLabel, p.measuredMessages, pRate, 'POST round trip', p.latency, {
    key: 'c-produced',
    errors: String(p.errors.total + p.badResults),
    serverCpu: c.server,
    benchCpu: c.bench,
  });
  row(mode, `${label}: consumed`, target.nodesLabel, ackedInWindow, cRate, 'pull round trip', r.pullLatency, { key: 'c-consumed', errors: String(r.errors.total) });
  row(mode, '', '', undefined, undefined, 'ack round trip', r.ackLatency);
  row(mode, '', '', undefined, undefined, 'publish→receive', r.e2eLatency);
  const tag = `${mode} (c) [${target.nodesLabel}]`;
  notes.push(`${tag}: storage steps (a second, mean, entries each): ${c.steps}`);
  if (p.errors.total > 0) notes.push(`${tag}: produce errors: ${p.errors.summary()}`);
  if (r.errors.total > 0) notes.push(`${tag}: consume errors: ${r.errors.summary()}`);
  if (r.distinct < p.totalMessages) {
    notes.push(`${tag}: ${fmtNum(p.totalMessages)} published, only ${fmtNum(r.distinct)} received by the end of the ${drainSeconds}s drain (backlog stat ${after.backlog})`);
  }
  if (r.duplicates > 0) notes.push(`${tag}: ${r.duplicates} duplicate deliveries`);
  if (r.invalidAcks > 0) notes.push(`${tag}: ${r.invalidAcks} ackIds answered as invalid`);
  console.error(
    `  produced ${fmtNum(pRate)} msg/s, consumed ${fmtNum(cRate)} msg/s in the window; ${fmtNum(p.totalMessages)} published, ${fmtNum(r.distinct)} received; backlog now ${after.backlog}; CPU ${c.server}`,
  );
}

// ---------------------------------------------------------------------------------------------------
// (d) failover

async function scenarioFailover(mode: 'sync' | 'relaxed'): Promise<void> {
  const label = `${mode} (d)`;
  let ct: ClusterTarget;
  try {
    ct = await clusterTarget(mode);
  } catch (e) {
    notes.push(`${label}: could not start: ${(e as Error).message}`);
    return;
  }
  const { cluster } = ct;
  const clients = new Map(cluster.members.map((m) => [m.id, new Client(m.url, cfg.failoverWorkers + 2)]));
  const ids = cluster.members.map((m) => m.id);
  const topic = 'bench-failover';
  const path = `/v1/topics/${topic}/messages`;
  const setup = clients.get(ct.leader)!;
  const pad = payload(cfg.size - 40);
  // Load state shared by the workers.
  let preferred = ct.leader;
  let stopLoad = false;
  let logical = 0;
  let succeeded = 0;
  let duplicatesAnswered = 0;
  let unresolved = 0;
  let lastOkAt = 0;
  const oks: { sent: number; done: number }[] = [];
  const errorsSince: { t: number; key: string }[] = [];
  const latency = new Samples();
  const loadDeadline = performance.now() + 300_000;
  const worker = async (w: number) => {
    let n = 0;
    while (!stopLoad && performance.now() < loadDeadline && n < 1_000_000) {
      n++;
      logical++;
      const body = JSON.stringify({ messages: [{ data: pad, dedupId: `w${w}-${n}` }] });
      let target = preferred;
      let attempts = 0;
      let done = false;
      // Retry this one message (same dedupId) until it is committed, the load stops, or 60 s pass.
      const giveUpAt = performance.now() + 60_000;
      while (!done && performance.now() < giveUpAt && attempts < 5000) {
        attempts++;
        const sent = performance.now();
        const r = await timedCall(clients.get(target)!, 'POST', path, body, 5000);
        const t = performance.now();
        if (r.status >= 200 && r.status < 300) {
          done = true;
          succeeded++;
          if (r.body?.results?.[0]?.duplicate) duplicatesAnswered++;
          oks.push({ sent, done: t });
          latency.add(t - sent);
          lastOkAt = t;
          preferred = target;
          break;
        }
        errorsSince.push({ t, key: r.status === 0 ? `n${target} ${r.error}` : `n${target} HTTP ${r.status} ${r.body?.error?.code ?? ''}`.trim() });
        if (errorsSince.length > 100_000) errorsSince.splice(0, 50_000);
        // Next node; the dead one refuses at once.
        target = ids[(ids.indexOf(target) + 1) % ids.length]!;
        if (stopLoad && attempts > 1) break;
        await sleep(20);
      }
      if (!done) unresolved++;
      await sleep(cfg.failoverPauseMs);
    }
  };
  let workers: Promise<void>[] = [];
  try {
    await setup.ok('PUT', `/v1/topics/${topic}`, {});
    await setup.ok('PUT', `/v1/subscriptions/${topic}-sub`, { topic, startAt: 'earliest' });
    workers = Array.from({ length: cfg.failoverWorkers }, (_, i) => worker(i + 1));
    await sleep(2000);
    console.error(`  light load: ${fmtNum(succeeded / 2)} publishes/s (${cfg.failoverWorkers} workers, ${cfg.failoverPauseMs} ms pause)`);
    for (let round = 1; round <= cfg.failovers; round++) {
      const leader = await cluster.waitLeader(30_000);
      const okBefore = oks.length;
      const lastOkBefore = lastOkAt;
      const tKill = cluster.kill(leader);
      await cluster.waitExit(leader);
      // Wait for the first publish sent after the kill to succeed.
      let first: { sent: number; done: number } | undefined;
      const deadline = tKill + 30_000;
      while (!first && performance.now() < deadline) {
        for (let i = okBefore; i < oks.length; i++) {
          const o = oks[i]!;
          if (o.sent >= tKill && (!first || o.done < first.done)) first = o;
        }
        if (!first) await sleep(5);
      }
      const failoverMs = first ? first.done - tKill : NaN;
      const gapErrors = new Map<string, number>();
      for (const e of errorsSince) if (e.t >= tKill && (!first || e.t <= first.done)) gapErrors.set(e.key, (gapErrors.get(e.key) ?? 0) + 1);
      const newLeader = await cluster.waitLeader(30_000);
      const term = (await cluster.view(newLeader))?.term ?? NaN;
      // Restart the killed node on its data and wait until it has caught up.
      const r0 = performance.now();
      await cluster.startMember(leader);
      const restartMs = performance.now() - r0;
      const cu = await cluster.waitCaughtUp(leader, newLeader, 60_000);
      failoverRounds.push({
        mode,
        round,
        killed: leader,
        newLeader,
        term,
        failoverMs,
        lastOkBeforeMs: lastOkBefore - tKill,
        errorsInGap: [...gapErrors].map(([k, v]) => `${k}×${v}`).join(', ') || 'none',
        restartMs,
        catchUpMs: cu.ms,
        catchUpTarget: cu.target,
      });
      console.error(
        `  round ${round}: killed n${leader}; first publish OK ${fmtMs(failoverMs)} ms after the kill; new leader n${newLeader} (term ${term}); n${leader} restarted in ${(restartMs / 1000).toFixed(1)}s, caught up (index ${cu.target}) in ${(cu.ms / 1000).toFixed(1)}s`,
      );
      await sleep(1000);
    }
  } catch (e) {
    notes.push(`${label}: failed: ${(e as Error).stack ?? e}`);
    console.error(`  failed: ${(e as Error).message}`);
  } finally {
    stopLoad = true;
    await Promise.all(workers);
  }
  try {
    const leader = await cluster.waitLeader(30_000);
    const info = await clients.get(leader)!.ok('GET', `/v1/topics/${topic}`);
    const subInfo = await clients.get(leader)!.ok('GET', `/v1/subscriptions/${topic}-sub`);
    if (info.messages !== succeeded) {
      notes.push(
        `${label}: ${succeeded} publishes answered 2xx (each its own dedupId; ${duplicatesAnswered} of them answered as duplicates of an earlier attempt) but the topic holds ${info.messages} (lastSeq ${info.lastSeq})` +
          (unresolved > 0 ? `; ${unresolved} publishes never got a 2xx (they may or may not be in)` : ''),
      );
    }
    if (subInfo.backlog !== info.messages) notes.push(`${label}: the subscription's backlog is ${subInfo.backlog}, the topic holds ${info.messages}`);
    const times = failoverRounds.filter((f) => f.mode === mode).map((f) => f.failoverMs);
    const s = new Samples();
    for (const t of times) s.add(t);
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
    row(mode, `(d) kill -9 leader → next publish OK, ×${times.length}`, '3 (any node)', undefined, undefined, `failover ms (n=${times.length})`, undefined, {
      p50: fmtMs(median),
      p99: '',
      max: fmtMs(s.max()),
      errors: String(errorsSince.length),
    });
    row(mode, `(d) the light load itself (${cfg.failoverWorkers} workers)`, '3 (any node)', succeeded, undefined, 'publish incl. retries', latency, { errors: '' });
    console.error(
      `  ${fmtNum(succeeded)} publishes OK (${duplicatesAnswered} answered as duplicate after a retry), ${unresolved} unresolved; topic holds ${fmtNum(info.messages)}; failover ms ${times.map((t) => fmtMs(t)).join(', ')}, median ${fmtMs(median)}`,
    );
  } catch (e) {
    notes.push(`${label}: final check failed: ${(e as Error).message}`);
  }
  for (const c of clients.values()) await c.close().catch(() => {});
  const problems = await ct.check().catch((e) => [`check failed: ${(e as Error).message}`]);
  // Leadership moves on purpose here; drop that note.
  for (const p of problems) if (!p.startsWith('leadership moved')) notes.push(`${label}: ${p}`);
  await ct.stop().catch((e) => notes.push(`${label}: stop failed: ${(e as Error).message}`));
}

// ---------------------------------------------------------------------------------------------------

async function runMode(mode: 'sync' | 'relaxed'): Promise<void> {
  const has = (p: string) => cfg.phases.includes(p);
  const a = `(a) produce, batch 16, ${cfg.concurrency} in flight`;
  if (has('single-a')) {
    console.error(`▶ [${mode}] 1 node ${a}: ${cfg.warmup}s + ${cfg.seconds}s`);
    await withTarget(`${mode} 1-node (a)`, () => singleTarget(mode), (t, c) => scenarioProduce(mode, t, c, 'a1', a), cfg.concurrency + 4);
  }
  if (has('a')) {
    console.error(`▶ [${mode}] 3 nodes ${a}: ${cfg.warmup}s + ${cfg.seconds}s`);
    await withTarget(
      `${mode} 3-node (a)`,
      () => clusterTarget(mode),
      async (t, c) => {
        await scenarioProduce(mode, t, c, 'a3', a);
        if (cfg.viaFollower) {
          const ct = t as ClusterTarget;
          const follower = ct.cluster.members.find((m) => m.id !== ct.leader)!;
          console.error(`▶ [${mode}] 3 nodes ${a}, through follower n${follower.id}: ${cfg.warmup}s + ${cfg.seconds}s`);
          const fc = new Client(follower.url, cfg.concurrency + 4);
          try {
            await scenarioProduce(mode, { ...t, nodesLabel: '3 via follower' }, fc, 'a3f', a);
          } finally {
            await fc.close().catch(() => {});
          }
        }
      },
      cfg.concurrency + 4,
    );
  }
  if (has('single-b')) {
    console.error(`▶ [${mode}] 1 node (b): pre-fill ${fmtNum(cfg.messages)}, then drain`);
    await withTarget(`${mode} 1-node (b)`, () => singleTarget(mode), (t, c) => scenarioConsume(mode, t, c), cfg.pullers + 12);
  }
  if (has('b')) {
    console.error(`▶ [${mode}] 3 nodes (b): pre-fill ${fmtNum(cfg.messages)}, then drain`);
    await withTarget(`${mode} 3-node (b)`, () => clusterTarget(mode), (t, c) => scenarioConsume(mode, t, c), cfg.pullers + 12);
  }
  if (has('single-c')) {
    console.error(`▶ [${mode}] 1 node (c): ${cfg.warmup}s + ${cfg.seconds}s, then drain`);
    await withTarget(`${mode} 1-node (c)`, () => singleTarget(mode), (t, c) => scenarioMixed(mode, t, c), cfg.mixedProducers + cfg.pullers + 12);
  }
  if (has('c')) {
    console.error(`▶ [${mode}] 3 nodes (c): ${cfg.warmup}s + ${cfg.seconds}s, then drain`);
    await withTarget(`${mode} 3-node (c)`, () => clusterTarget(mode), (t, c) => scenarioMixed(mode, t, c), cfg.mixedProducers + cfg.pullers + 12);
  }
  if (has('d')) {
    console.error(`▶ [${mode}] 3 nodes (d): failover ×${cfg.failovers} under a light publish load`);
    await scenarioFailover(mode);
  }
}

async function main(): Promise<void> {
  const started = new Date();
  const t0 = performance.now();
  const startLoad = loadavg();
  console.error(
    `Herald 3-node cluster benchmark: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, ${cfg.size}-byte messages, durability ${modes.join(' + ')}; load average ${startLoad.map((l) => l.toFixed(2)).join(' ')}`,
  );
  buildBundle();
  const loads: string[] = [];
  for (const mode of modes) {
    loads.push(`${mode} start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    await runMode(mode);
  }
  // Ratios: 3 nodes via the leader against 1 node, same mode and scenario.
  for (const r of rows) {
    if (!r.key || r.rate === undefined || r.nodes === '1') continue;
    const one = rows.find((x) => x.mode === r.mode && x.key === r.key && x.nodes === '1');
    if (one?.rate) r.ratio = `${Math.round((100 * r.rate) / one.rate)}%`;
  }
  const out: string[] = [];
  out.push(`## Herald 3-node cluster vs 1 node — ${started.toISOString()}`);
  out.push('');
  out.push(
    `${cpus().length} cores, node ${process.version}, ${cfg.size}-byte messages, durability ${modes.join(' and ')}; ` +
      'every node (1 or 3) a child process of the load generator, all on this machine; load sent to the leader\'s HTTP port unless the row says otherwise',
  );
  out.push(`server: ${serverVersion()} (dist/main.js bundle)`);
  out.push(
    `load average (1/5/15 min) at start ${startLoad.map((l) => l.toFixed(2)).join(' ')}; ${loads.join('; ')}; at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; run took ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  out.push(`settings: ${JSON.stringify(cfg)}`);
  out.push('');
  out.push(
    table(
      ['durability', 'scenario', 'nodes', 'messages', 'msg/s', '3 vs 1 node', 'latency of', 'p50 ms', 'p99 ms', 'max ms', 'non-2xx/err', 'server CPU', 'bench CPU'],
      rows.map((r) => [r.mode, r.scenario, r.nodes, r.messages, r.rate === undefined ? '' : fmtNum(r.rate), r.ratio, r.latencyOf, r.p50, r.p99, r.max, r.errors, r.serverCpu, r.benchCpu]),
    ),
  );
  out.push('');
  out.push('Target: 3-node throughput at least 60% of one node\'s. "server CPU" is user+sys of the node processes (L = leader, F = followers), 100% = one core.');
  if (failoverRounds.length > 0) {
    out.push('');
    out.push('Failover rounds (kill -9 of the leader under the light publish load; "first OK" = first publish sent after the kill and answered 2xx):');
    out.push('');
    out.push(
      table(
        ['durability', 'round', 'killed', 'new leader', 'term', 'first OK after kill ms', 'last OK before kill ms', 'errors until then', 'restart to listening ms', 'catch-up ms (to index)'],
        failoverRounds.map((f) => [
          f.mode,
          String(f.round),
          `n${f.killed}`,
          `n${f.newLeader}`,
          String(f.term),
          fmtMs(f.failoverMs),
          fmtMs(f.lastOkBeforeMs),
          f.errorsInGap,
          fmtNum(f.restartMs),
          `${fmtNum(f.catchUpMs)} (${f.catchUpTarget})`,
        ]),
      ),
    );
  }
  if (notes.length > 0) {
    out.push('');
    out.push('Notes:');
    for (const n of notes) out.push(`- ${n}`);
  }
  console.log(out.join('\n'));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
