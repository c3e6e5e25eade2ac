/**
 * Scale curves (`npm run bench:scale -- [flags]`, issue 6): how Herald's costs grow with the backlog,
 * with the subscriptions on a topic and with the payload size, and whether any grows faster than
 * linearly.
 *
 * Every curve gets fresh server processes and data dirs: one node (`dist/main.js --port 0 --data DIR`,
 * sync durability by default) or, with --nodes 3, a local 3-node group (bench/lib/cluster.ts) with the
 * load sent to its leader. The bundle is built once (`npm run build`, in HERALD_BENCH_ROOT when set).
 * The load generator is this process (undici Pool, keep-alive, fixed requests in flight), as in
 * bench/single-node.ts. Before each curve the server is warmed up on a throw-away queue (publish,
 * drain, delete), so the first point does not pay for the JIT.
 *
 *   1. backlog: one queue, nobody consuming; 1 KiB messages in batches of 16, --concurrency requests in
 *      flight, until the backlog reaches each mark (0 → 100k → 500k → 1M → 2M → 5M, up to
 *      --backlog-max): throughput, server CPU per message, POST latency per bucket, and the leader's
 *      RSS and data-dir size at each mark. Then (unless --no-drain) the same queue is drained back
 *      down through the same marks by --pullers pullers (pull, then ack), per bucket again.
 *   2. subscriptions: for each count in --subs (1, 10, 50, 100) a fresh topic with that many pull
 *      subscriptions; publish --sub-messages 1 KiB messages (batches of 16), then drain every
 *      subscription (--pullers pullers in all, round-robin over the subscriptions): publish msg/s and
 *      server CPU per message; total deliveries/s and server CPU µs per delivery.
 *   3. payload: for each size in --payloads (100 B, 1 KiB, 4 KiB, 16 KiB, 64 KiB) a fresh queue;
 *      publish for --seconds (and at most --payload-messages / --payload-bytes), then drain for at
 *      most --seconds: msg/s, MB/s and server CPU per KiB both ways.
 *
 * Each table has the cost per unit relative to its first row ("× first"); the last lines say, per
 * curve, whether the cost per unit at the last point is more than 1.5× that at the first (a cost that
 * grows faster than linearly in the backlog, the subscriptions or the bytes). Wall-clock cost (1 /
 * throughput at fixed concurrency) moves with whatever else runs on the machine; server CPU per unit
 * (user + system from /proc/<pid>/stat, all nodes summed) much less.
 *
 * Flags (env BENCH_<NAME> in upper snake case works too, flags win):
 *   --quick                tiny versions of all three for a smoke run (backlog max 50k, subs 1,10 with
 *                          5,000 messages, payloads 100 B and 16 KiB for 2 s each)
 *   --curves list          backlog,subs,payload (default all)
 *   --nodes N              1 or 3 (default 1)
 *   --durability M         sync or relaxed (default sync)
 *   --concurrency N        publish requests in flight (default 64)
 *   --batch N              messages per publish request (default 16)
 *   --pullers N            concurrent pullers (default 8)
 *   --pull-max N           "max" per pull (default 500)
 *   --pull-bytes N         at most this many payload bytes per pull: "max" is lowered for large
 *                          payloads (default 8 MiB)
 *   --warmup N             seconds of warm-up load before each curve (default 2)
 *   --backlog-max N        the backlog curve's last mark (default 5,000,000; k and M suffixes work)
 *   --backlog-marks list   the marks (default 100k,500k,1M,2M,5M, those under --backlog-max, then it)
 *   --backlog-seconds N    time limit of the backlog fill, and again of its drain (default 1800)
 *   --no-drain             skip draining the backlog
 *   --size N               message bytes in curves 1 and 2 (default 1024)
 *   --subs list            subscription counts (default 1,10,50,100)
 *   --sub-messages N       messages published per point of curve 2 (default 20000)
 *   --sub-seconds N        time limit of each publish and each drain of curve 2 (default 300)
 *   --payloads list        payload sizes (default 100,1k,4k,16k,64k; k = 1024)
 *   --seconds N            time limit of each publish and each drain of curve 3 (default 5)
 *   --payload-messages N   cap on messages per point of curve 3 (default 1,000,000)
 *   --payload-bytes N      cap on payload bytes per point of curve 3 (default 2 GiB)
 */
import { rmSync, readdirSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { BenchCluster, buildBundle, spawnNode, stopNode, type NodeProcess } from './lib/cluster.js';
import { drainFanout } from './lib/fanout.js';
import { Client } from './lib/http.js';
import { consume, produce, type Abort } from './lib/load.js';
import { cpuSecondsOf, dirBytes, mappedRssOf, memoryOf, serverVersion, tempDir } from './lib/server.js';
import { fmtBytes, fmtMs, fmtNum, table } from './lib/stats.js';
import { flagText } from './lib/flags.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    curves: { type: 'string' },
    nodes: { type: 'string' },
    durability: { type: 'string' },
    concurrency: { type: 'string' },
    batch: { type: 'string' },
    pullers: { type: 'string' },
    'pull-max': { type: 'string' },
    'pull-bytes': { type: 'string' },
    warmup: { type: 'string' },
    'backlog-max': { type: 'string' },
    'backlog-marks': { type: 'string' },
    'backlog-seconds': { type: 'string' },
    'no-drain': { type: 'boolean' },
    size: { type: 'string' },
    subs: { type: 'string' },
    'sub-messages': { type: 'string' },
    'sub-seconds': { type: 'string' },
    payloads: { type: 'string' },
    seconds: { type: 'string' },
    'payload-messages': { type: 'string' },
    'payload-bytes': { type: 'string' },
  },
  allowPositionals: false,
});

type FlagName = keyof typeof flags;
function raw(name: FlagName): string | undefined {
  return flagText(flags, name);
}
function bool(name: FlagName): boolean {
  return flags[name] === true || flagText(flags, name) === '1';
}

/** A count or size: "5000000", "5M", "100k" (k = 1000 for counts, 1024 for sizes). */
function parseAmount(text: string, k: number): number {
  const m = /^\s*([\d.]+)\s*([kKmMgG]?)(i?[bB])?\s*$/.exec(text.replace(/[_,]/g, ''));
  if (!m) throw new Error(`not a number: ${text}`);
  const unit = { '': 1, k, m: k * k, g: k * k * k }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Number(m[1]) * unit;
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a non-negative number: ${text}`);
  return n;
}
function num(name: FlagName, quick: number, full: number, k = 1000): number {
  const v = raw(name);
  return v === undefined ? (bool('quick') ? quick : full) : parseAmount(v, k);
}
function list(name: FlagName, quick: string, full: string, k: number): number[] {
  const v = raw(name) ?? (bool('quick') ? quick : full);
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => Math.round(parseAmount(s, k)));
}

const quick = bool('quick');
const allCurves = ['backlog', 'subs', 'payload'] as const;
type Curve = (typeof allCurves)[number];
const durability = raw('durability') ?? 'sync';
if (durability !== 'sync' && durability !== 'relaxed') throw new Error(`--durability is sync or relaxed, not ${durability}`);
const nodes = Math.round(num('nodes', 1, 1));
if (nodes !== 1 && nodes !== 3) throw new Error(`--nodes is 1 or 3, not ${nodes}`);

const cfg = {
  quick,
  curves: (raw('curves') ?? allCurves.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean) as Curve[],
  nodes,
  durability,
  concurrency: Math.max(1, Math.round(num('concurrency', 64, 64))),
  batch: Math.min(1000, Math.max(1, Math.round(num('batch', 16, 16)))),
  pullers: Math.max(1, Math.round(num('pullers', 8, 8))),
  pullMax: Math.min(1000, Math.max(1, Math.round(num('pull-max', 500, 500)))),
  pullBytes: Math.max(1, Math.round(num('pull-bytes', 8 << 20, 8 << 20, 1024))),
  warmup: num('warmup', 0.5, 2),
  backlogMax: Math.max(1, Math.round(num('backlog-max', 50_000, 5_000_000))),
  backlogSeconds: num('backlog-seconds', 60, 1800),
  drain: !bool('no-drain'),
  size: Math.max(16, Math.round(num('size', 1024, 1024, 1024))),
  subs: list('subs', '1,10', '1,10,50,100', 1000).map((n) => Math.max(1, n)),
  subMessages: Math.max(1, Math.round(num('sub-messages', 5_000, 20_000))),
  subSeconds: num('sub-seconds', 30, 300),
  payloads: list('payloads', '100,16k', '100,1k,4k,16k,64k', 1024).map((n) => Math.max(1, n)),
  seconds: num('seconds', 2, 5),
  payloadMessages: Math.max(1, Math.round(num('payload-messages', 1_000_000, 1_000_000))),
  payloadBytes: Math.max(1, Math.round(num('payload-bytes', 2 * 1024 ** 3, 2 * 1024 ** 3, 1024))),
};
for (const c of cfg.curves) if (!allCurves.includes(c)) throw new Error(`unknown curve ${c} (known: ${allCurves.join(',')})`);

/** The backlog marks: the standard ones under the maximum, then the maximum; scaled down for a small maximum. */
function backlogMarks(): number[] {
  const given = raw('backlog-marks');
  const std = given !== undefined ? given.split(',').map((s) => Math.round(parseAmount(s.trim(), 1000))) : [100_000, 500_000, 1_000_000, 2_000_000, 5_000_000];
  let marks = [...new Set([...std.filter((m) => m > 0 && m < cfg.backlogMax), cfg.backlogMax])].sort((a, b) => a - b);
  // Fewer than three buckets says nothing about a curve: use 10%, 20%, 50% and 100% of the maximum.
  if (marks.length < 3 && given === undefined) marks = [...new Set([0.1, 0.2, 0.5, 1].map((f) => Math.max(1, Math.round(cfg.backlogMax * f))))];
  return marks;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const notes: string[] = [];
const verdicts: string[] = [];
const output: string[] = [];

function fmtCount(n: number): string {
  if (n >= 1_000_000 && n % 100_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1000 && n % 1000 === 0) return `${n / 1000}k`;
  return fmtNum(n);
}
function fmtSize(n: number): string {
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}
const fmtUs = (n: number) => (!Number.isFinite(n) ? '-' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0));
const fmtRatio = (v: number, base: number) => (Number.isFinite(v) && Number.isFinite(base) && base > 0 ? `${(v / base).toFixed(2)}` : '-');
const fmtMBps = (bytesPerSec: number) => (bytesPerSec / 1e6).toFixed(1);

/** Bytes allocated on disk (like du), where `dirBytes` gives apparent sizes. */
function dirAllocated(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) {
    try {
      const st = statSync(join(dir, f));
      total += st.isDirectory() ? dirAllocated(join(dir, f)) : st.blocks * 512;
    } catch {
      /* gone */
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------
// Targets: one node or a 3-node group, seen the same way by the curves

interface Target {
  label: string;
  url: string;
  abort: Abort;
  /** User + system CPU seconds of all server processes. */
  cpu(): number;
  /** RSS of the node(s), the entry node first, each with the resident pages of its LMDB map (file-backed) in brackets. */
  memory(): string;
  /** The entry node's data dir: apparent and allocated bytes. */
  disk(): { apparent: number; allocated: number };
  problems(): Promise<string[]>;
  stop(): Promise<void>;
}

let running: Target | undefined;

/** "VmRSS (LMDB map resident)" of a process, as bench/memory.ts separates them. */
function rssText(pid: number): string {
  return `${fmtBytes(memoryOf(pid).rss)} (${fmtBytes(mappedRssOf(pid, '/herald.mdb'))})`;
}

function watch(abort: Abort, why: () => string | undefined): NodeJS.Timeout {
  return setInterval(() => {
    const w = why();
    if (w && !abort.aborted) {
      abort.aborted = true;
      abort.reason = w;
    }
  }, 250);
}

/** Lines every node prints that say nothing about the run. */
const routine = /herald listening on|SIGTERM, stopping|^\[bench\]|authentication is OFF/;

const durabilityArgs = cfg.durability === 'relaxed' ? ['--durability', 'relaxed'] : [];

async function singleTarget(): Promise<Target> {
  // No '.' in the name: lmdb-js takes a path with an extension for a file.
  const dataDir = tempDir('herald-scale-');
  const log = { text: '' };
  let proc: NodeProcess;
  try {
    proc = await spawnNode(['--port', '0', '--data', dataDir, ...durabilityArgs], {}, log);
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const abort: Abort = { aborted: false };
  const timer = watch(abort, () => (proc.gone() ? `the node (pid ${proc.pid}) exited` : undefined));
  return {
    label: `1 node (${cfg.durability})`,
    url: proc.url,
    abort,
    cpu: () => (proc.gone() ? NaN : cpuSecondsOf(proc.pid)),
    memory: () => (proc.gone() ? '-' : rssText(proc.pid)),
    disk: () => ({ apparent: dirBytes(dataDir), allocated: dirAllocated(dataDir) }),
    async problems() {
      const out: string[] = [];
      if (abort.aborted) out.push(`aborted: ${abort.reason}; output:\n${log.text.slice(-2000)}`);
      const lines = log.text.split('\n').filter((l) => l && !routine.test(l));
      if (lines.length > 0) out.push(`the node printed:\n${lines.slice(0, 20).join('\n')}`);
      return out;
    },
    async stop() {
      clearInterval(timer);
      await stopNode(proc, 30_000);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function clusterTarget(): Promise<Target> {
  const { cluster, leader } = await BenchCluster.startLed(3, durabilityArgs);
  const lead = cluster.member(leader);
  const others = cluster.members.filter((m) => m.id !== leader);
  const abort: Abort = { aborted: false };
  const timer = watch(abort, () => cluster.crashes()[0]);
  const rssOf = (m: (typeof cluster.members)[number]) => (m.proc && !m.proc.gone() ? rssText(m.proc.pid) : '-');
  return {
    label: `3 nodes (${cfg.durability}, load on leader n${leader})`,
    url: lead.url,
    abort,
    cpu() {
      let s = 0;
      for (const v of cluster.cpu().values()) s += v;
      return s;
    },
    memory: () => `L ${rssOf(lead)}; F ${others.map(rssOf).join(', ')}`,
    disk: () => ({ apparent: dirBytes(lead.dataDir), allocated: dirAllocated(lead.dataDir) }),
    async problems() {
      const out = [...cluster.crashes()];
      if (abort.aborted) for (const m of cluster.members) out.push(`node ${m.id} output (last 2000 chars):\n${m.log.text.slice(-2000)}`);
      const unusual = cluster.unusualOutput().filter((l) => !routine.test(l.replace(/^node \d+: /, '')));
      if (unusual.length > 0) out.push(`nodes printed:\n${unusual.join('\n')}`);
      const now = await cluster.leaderNow();
      if (now !== undefined && now !== leader) out.push(`leadership moved: n${leader} → n${now}`);
      return out;
    },
    async stop() {
      clearInterval(timer);
      await cluster.stop();
    },
  };
}

async function withTarget(curve: string, body: (t: Target, client: Client) => Promise<void>): Promise<void> {
  let target: Target;
  try {
    target = cfg.nodes === 3 ? await clusterTarget() : await singleTarget();
  } catch (e) {
    notes.push(`${curve}: could not start the server: ${(e as Error).message.slice(0, 2000)}`);
    console.error(`  could not start: ${(e as Error).message}`);
    return;
  }
  running = target;
  const client = new Client(target.url, cfg.concurrency + cfg.pullers + 8);
  try {
    await warmUp(target, client);
    await body(target, client);
  } catch (e) {
    notes.push(`${curve}: failed: ${(e as Error).stack ?? e}`);
    console.error(`  failed: ${(e as Error).message}`);
  } finally {
    await client.close().catch(() => {});
    const problems = await target.problems().catch((e) => [`check failed: ${(e as Error).message}`]);
    for (const p of problems) notes.push(`${curve}: ${p}`);
    await target.stop().catch((e) => notes.push(`${curve}: stop failed: ${(e as Error).message}`));
    running = undefined;
  }
}

/** Publish for --warmup seconds into a throw-away queue, drain it, delete it. */
async function warmUp(target: Target, client: Client): Promise<void> {
  if (cfg.warmup <= 0) return;
  const q = 'scale-warmup';
  await client.ok('PUT', `/v1/queues/${q}`, {});
  const p = await produce(client, {
    path: `/v1/queues/${q}/messages`,
    batch: cfg.batch,
    size: cfg.size,
    concurrency: cfg.concurrency,
    seconds: cfg.warmup,
    warmupSeconds: 0,
    maxRequests: 1_000_000,
    maxMessages: 200_000,
    abort: target.abort,
  });
  await consume(client, {
    subPath: `/v1/queues/${q}`,
    pullers: cfg.pullers,
    pullMax: cfg.pullMax,
    waitSeconds: 0,
    target: () => p.totalMessages,
    deadline: performance.now() + Math.max(5, 4 * cfg.warmup) * 1000,
    maxPulls: 100_000,
    abort: target.abort,
  });
  await client.ok('DELETE', `/v1/queues/${q}`);
}

/** CPU seconds of the server(s) and wall seconds between now and the call of the returned function. */
function meter(target: Target): () => { cpu: number; wall: number } {
  const c0 = target.cpu();
  const t0 = performance.now();
  return () => ({ cpu: target.cpu() - c0, wall: (performance.now() - t0) / 1000 });
}

/**
 * /proc counts CPU in 10 ms ticks, and a point of a few hundred milliseconds is mostly ramp-up and
 * ramp-down: per-unit figures of such a point are rough, and a verdict on them says so.
 */
const roughCpuSeconds = 0.25;
const roughWallSeconds = 0.5;
const isRough = (m: { cpu: number; wall: number }) => m.cpu < roughCpuSeconds || m.wall < roughWallSeconds;
const roughMark = (rough: boolean, text: string) => (rough ? `~${text}` : text);
const roughFootnote = `~ marks a point that lasted under ${roughWallSeconds} s or used under ${roughCpuSeconds} s of server CPU (/proc counts CPU in 10 ms ticks): its per-unit figures are rough.`;

function verdict(curve: string, what: string, first: number, last: number, firstAt: string, lastAt: string, rough = false): void {
  if (!Number.isFinite(first) || !Number.isFinite(last) || first <= 0) {
    verdicts.push(`- ${curve}: ${what}: not enough points to tell`);
    return;
  }
  const r = last / first;
  const call = r > 1.5 ? 'grows faster than linearly (> 1.5×)' : 'no faster than linear (≤ 1.5×)';
  verdicts.push(
    `- ${curve}: ${what} at ${lastAt} is ${r.toFixed(2)}× that at ${firstAt}: ` +
      (rough ? `too short to tell (would read: ${call}; a point is under the resolution, see ~)` : r > 1.5 ? `**${call}**` : call),
  );
}

// ---------------------------------------------------------------------------------------------------
// 1. Backlog

async function curveBacklog(target: Target, client: Client): Promise<void> {
  const q = 'scale-backlog';
  const marks = backlogMarks();
  await client.ok('PUT', `/v1/queues/${q}`, {});
  const path = `/v1/queues/${q}/messages`;
  const d0 = target.disk();
  const fillRows: string[][] = [['0', '', '', '', '', '', '', '', '', '', target.memory(), fmtBytes(d0.apparent), fmtBytes(d0.allocated), '']];
  const fill: { to: number; wallUs: number; cpuUs: number; rough: boolean }[] = [];
  let backlog = 0;
  const deadline = performance.now() + cfg.backlogSeconds * 1000;
  console.error(`▶ backlog: filling to ${marks.map(fmtCount).join(', ')} (${fmtSize(cfg.size)}, batch ${cfg.batch}, ${cfg.concurrency} in flight; limit ${cfg.backlogSeconds}s)`);
  for (const mark of marks) {
    const left = (deadline - performance.now()) / 1000;
    if (target.abort.aborted || left <= 0) {
      notes.push(`backlog: stopped at ${fmtNum(backlog)} of ${fmtNum(cfg.backlogMax)} (${target.abort.aborted ? target.abort.reason : `the ${cfg.backlogSeconds}s limit`})`);
      break;
    }
    const want = mark - backlog;
    if (want <= 0) continue;
    const m = meter(target);
    const r = await produce(client, {
      path,
      batch: cfg.batch,
      size: cfg.size,
      concurrency: cfg.concurrency,
      seconds: left,
      warmupSeconds: 0,
      maxRequests: Math.ceil(want / cfg.batch) + 100_000,
      maxMessages: want,
      abort: target.abort,
    });
    const measured = m();
    const { cpu, wall } = measured;
    const rough = isRough(measured);
    const from = backlog;
    backlog += r.totalMessages;
    const d = target.disk();
    const rate = r.totalMessages / wall;
    const wallUs = (wall * 1e6) / r.totalMessages;
    const cpuUs = (cpu * 1e6) / r.totalMessages;
    fill.push({ to: backlog, wallUs, cpuUs, rough });
    const [p50, p99] = r.latency.percentiles(50, 99);
    const errs = r.errors.total + r.badResults;
    fillRows.push([
      `${fmtCount(from)} → ${fmtCount(backlog)}`,
      fmtNum(r.totalMessages),
      wall.toFixed(1),
      fmtNum(rate),
      roughMark(rough, fmtUs(wallUs)),
      fmtRatio(wallUs, fill[0]!.wallUs),
      roughMark(rough, fmtUs(cpuUs)),
      fmtRatio(cpuUs, fill[0]!.cpuUs),
      fmtMs(p50!),
      fmtMs(p99!),
      target.memory(),
      fmtBytes(d.apparent),
      fmtBytes(d.allocated),
      String(errs),
    ]);
    if (r.errors.total > 0) notes.push(`backlog fill ${fmtCount(from)} → ${fmtCount(mark)}: errors: ${r.errors.summary()}`);
    if (r.badResults > 0) notes.push(`backlog fill ${fmtCount(from)} → ${fmtCount(mark)}: ${r.badResults} 2xx answers without one result per message`);
    console.error(`  ${fmtCount(from)} → ${fmtCount(backlog)}: ${fmtNum(rate)} msg/s, ${fmtUs(cpuUs)} µs CPU/msg, RSS ${target.memory()}, data ${fmtBytes(d.apparent)}`);
    if (r.totalMessages < want) {
      notes.push(`backlog: stopped at ${fmtNum(backlog)} of mark ${fmtNum(mark)} (${target.abort.aborted ? target.abort.reason : `the ${cfg.backlogSeconds}s limit`})`);
      break;
    }
  }
  const info = await client.ok('GET', `/v1/queues/${q}`);
  if (info.subscription.backlog !== backlog) notes.push(`backlog: the queue reports a backlog of ${fmtNum(info.subscription.backlog)}, ${fmtNum(backlog)} were acknowledged`);
  output.push(`### 1. Backlog: publishing into a queue nobody consumes (${target.label})`);
  output.push('');
  output.push(
    `${fmtSize(cfg.size)} messages, batches of ${cfg.batch}, ${cfg.concurrency} requests in flight. µs/msg wall = 1 / throughput; CPU = user + system of the server process(es) ` +
      `from /proc. RSS (in brackets: resident pages of LMDB's mapped herald.mdb, file-backed) and data dir are read at the end of each bucket, with no load running${cfg.nodes === 3 ? ' (RSS: leader L, followers F; data dir: leader)' : ''}; ` +
      'the data dir at 0 holds what the warm-up left (its queue is deleted, its files not yet reclaimed).',
  );
  output.push('');
  output.push(
    table(
      ['backlog', 'published', 's', 'msg/s', 'µs/msg wall', '× first', 'server CPU µs/msg', '× first', 'POST p50 ms', 'POST p99 ms', 'RSS (LMDB)', 'data dir', 'data dir (du)', 'errors'],
      fillRows,
    ),
  );
  if (fill.some((f) => f.rough)) output.push('', roughFootnote);
  if (fill.length > 0) {
    const a = fill[0]!;
    const z = fill[fill.length - 1]!;
    const firstAt = `the first bucket (to ${fmtCount(a.to)})`;
    const lastAt = `the last (to ${fmtCount(z.to)})`;
    verdict('backlog, publish', 'server CPU per message', a.cpuUs, fill.length > 1 ? z.cpuUs : NaN, firstAt, lastAt, a.rough || z.rough);
    verdict('backlog, publish', 'wall time per message', a.wallUs, fill.length > 1 ? z.wallUs : NaN, firstAt, lastAt, a.rough || z.rough);
  }

  if (!cfg.drain || backlog === 0) return;
  // Drain back down through the same marks.
  const down = [...marks.filter((m) => m < backlog)].reverse();
  down.push(0);
  const drainDeadline = performance.now() + cfg.backlogSeconds * 1000;
  const drainFrom = backlog;
  const drainRows: string[][] = [];
  const drained: { to: number; wallUs: number; cpuUs: number; rough: boolean }[] = [];
  console.error(`▶ backlog: draining ${fmtNum(backlog)} through ${down.map(fmtCount).join(', ')} (${cfg.pullers} pullers, max ${cfg.pullMax}; limit ${cfg.backlogSeconds}s)`);
  for (const mark of [...new Set(down)]) {
    if (mark >= backlog) continue;
    if (target.abort.aborted || performance.now() >= drainDeadline) {
      notes.push(`backlog drain: stopped at ${fmtNum(backlog)} (${target.abort.aborted ? target.abort.reason : `the ${cfg.backlogSeconds}s limit`})`);
      break;
    }
    const want = backlog - mark;
    const m = meter(target);
    const r = await consume(client, {
      subPath: `/v1/queues/${q}`,
      pullers: cfg.pullers,
      pullMax: cfg.pullMax,
      waitSeconds: 0,
      target: () => want,
      deadline: drainDeadline,
      maxPulls: Math.ceil(want / cfg.pullMax) * 4 + 100_000,
      abort: target.abort,
    });
    const measured = m();
    const { cpu, wall } = measured;
    const rough = isRough(measured);
    const from = backlog;
    backlog -= r.acked;
    const d = target.disk();
    const wallUs = (wall * 1e6) / r.acked;
    const cpuUs = (cpu * 1e6) / r.acked;
    drained.push({ to: backlog, wallUs, cpuUs, rough });
    const [p50, p99] = r.pullLatency.percentiles(50, 99);
    drainRows.push([
      `${fmtCount(from)} → ${fmtCount(backlog)}`,
      fmtNum(r.acked),
      wall.toFixed(1),
      fmtNum(r.acked / wall),
      roughMark(rough, fmtUs(wallUs)),
      fmtRatio(wallUs, drained[0]!.wallUs),
      roughMark(rough, fmtUs(cpuUs)),
      fmtRatio(cpuUs, drained[0]!.cpuUs),
      fmtMs(p50!),
      fmtMs(p99!),
      target.memory(),
      fmtBytes(d.apparent),
      fmtBytes(d.allocated),
      String(r.errors.total + r.duplicates + r.invalidAcks),
    ]);
    const tag = `backlog drain ${fmtCount(from)} → ${fmtCount(mark)}`;
    if (r.errors.total > 0) notes.push(`${tag}: errors: ${r.errors.summary()}`);
    if (r.duplicates > 0) notes.push(`${tag}: ${r.duplicates} duplicate deliveries`);
    if (r.invalidAcks > 0) notes.push(`${tag}: ${r.invalidAcks} ackIds answered as invalid`);
    console.error(`  ${fmtCount(from)} → ${fmtCount(backlog)}: ${fmtNum(r.acked / wall)} msg/s, ${fmtUs(cpuUs)} µs CPU/msg, RSS ${target.memory()}, data ${fmtBytes(d.apparent)}`);
    if (r.acked < want) {
      notes.push(`${tag}: only ${fmtNum(r.acked)} of ${fmtNum(want)} acked (${target.abort.aborted ? target.abort.reason : 'time or pull limit'})`);
      break;
    }
  }
  const after = await client.ok('GET', `/v1/queues/${q}`);
  if (after.subscription.backlog !== backlog) notes.push(`backlog drain: the queue reports a backlog of ${fmtNum(after.subscription.backlog)}, expected ${fmtNum(backlog)}`);
  output.push('');
  output.push(`Draining the same queue back down (${cfg.pullers} pullers, pull max ${cfg.pullMax}, each pull acked before the next):`);
  output.push('');
  output.push(
    table(
      ['backlog', 'acked', 's', 'msg/s', 'µs/msg wall', '× first', 'server CPU µs/msg', '× first', 'pull p50 ms', 'pull p99 ms', 'RSS (LMDB)', 'data dir', 'data dir (du)', 'errors'],
      drainRows,
    ),
  );
  if (drained.some((f) => f.rough)) output.push('', roughFootnote);
  if (drained.length > 1) {
    // The first drain bucket is at the largest backlog: compare it with the last (smallest) one.
    const a = drained[0]!;
    const z = drained[drained.length - 1]!;
    const smallest = `the smallest backlog (to ${fmtCount(z.to)})`;
    const largest = `the largest (from ${fmtCount(drainFrom)})`;
    verdict('backlog, drain', 'server CPU per message', z.cpuUs, a.cpuUs, smallest, largest, a.rough || z.rough);
    verdict('backlog, drain', 'wall time per message', z.wallUs, a.wallUs, smallest, largest, a.rough || z.rough);
  }
}

// ---------------------------------------------------------------------------------------------------
// 2. Subscriptions per topic

async function curveSubs(target: Target, client: Client): Promise<void> {
  const rows: string[][] = [];
  const points: { subs: number; pubCpuUs: number; delWallUs: number; delCpuUs: number; pubRough: boolean; delRough: boolean }[] = [];
  for (const subs of cfg.subs) {
    if (target.abort.aborted) break;
    const topic = `scale-subs-${subs}`;
    console.error(`▶ subscriptions: ${subs} on one topic, ${fmtNum(cfg.subMessages)} × ${fmtSize(cfg.size)}`);
    await client.ok('PUT', `/v1/topics/${topic}`, {});
    const names = Array.from({ length: subs }, (_, i) => `${topic}-s${i + 1}`);
    for (const name of names) await client.ok('PUT', `/v1/subscriptions/${name}`, { topic, startAt: 'earliest' });
    const mp = meter(target);
    const p = await produce(client, {
      path: `/v1/topics/${topic}/messages`,
      batch: cfg.batch,
      size: cfg.size,
      concurrency: cfg.concurrency,
      seconds: cfg.subSeconds,
      warmupSeconds: 0,
      maxRequests: Math.ceil(cfg.subMessages / cfg.batch) + 100_000,
      maxMessages: cfg.subMessages,
      abort: target.abort,
    });
    const pub = mp();
    const published = p.totalMessages;
    const md = meter(target);
    const d = await drainFanout(client, {
      subPaths: names.map((n) => `/v1/subscriptions/${n}`),
      perSubscription: published,
      pullers: cfg.pullers,
      pullMax: cfg.pullMax,
      deadline: performance.now() + cfg.subSeconds * 1000,
      maxPulls: Math.ceil((published * subs) / cfg.pullMax) * 20 + 100_000,
      abort: target.abort,
    });
    const del = md();
    const expected = published * subs;
    const pubRate = published / pub.wall;
    const pubCpuUs = (pub.cpu * 1e6) / published;
    const delRate = d.distinct / del.wall;
    const delWallUs = (del.wall * 1e6) / d.distinct;
    const delCpuUs = (del.cpu * 1e6) / d.distinct;
    const pubRough = isRough(pub);
    const delRough = isRough(del);
    points.push({ subs, pubCpuUs, delWallUs, delCpuUs, pubRough, delRough });
    const b = points[0]!;
    const errs = p.errors.total + p.badResults + d.errors.total + d.duplicates + d.invalidAcks;
    rows.push([
      String(subs),
      fmtNum(published),
      fmtNum(pubRate),
      roughMark(pubRough, fmtUs(pubCpuUs)),
      fmtRatio(pubCpuUs, b.pubCpuUs),
      fmtNum(d.distinct),
      del.wall.toFixed(1),
      fmtNum(delRate),
      roughMark(delRough, fmtUs(delWallUs)),
      fmtRatio(delWallUs, b.delWallUs),
      roughMark(delRough, fmtUs(delCpuUs)),
      fmtRatio(delCpuUs, b.delCpuUs),
      target.memory(),
      String(errs),
    ]);
    const tag = `subscriptions ${subs}`;
    if (p.errors.total > 0) notes.push(`${tag}: publish errors: ${p.errors.summary()}`);
    if (p.badResults > 0) notes.push(`${tag}: ${p.badResults} 2xx publish answers without one result per message`);
    if (published < cfg.subMessages) notes.push(`${tag}: only ${fmtNum(published)} of ${fmtNum(cfg.subMessages)} published within ${cfg.subSeconds}s`);
    if (d.errors.total > 0) notes.push(`${tag}: drain errors: ${d.errors.summary()}`);
    if (d.duplicates > 0) notes.push(`${tag}: ${d.duplicates} duplicate deliveries`);
    if (d.invalidAcks > 0) notes.push(`${tag}: ${d.invalidAcks} ackIds answered as invalid`);
    if (d.distinct < expected) notes.push(`${tag}: only ${fmtNum(d.distinct)} of ${fmtNum(expected)} deliveries within ${cfg.subSeconds}s (${d.finished} of ${subs} subscriptions drained)`);
    console.error(
      `  publish ${fmtNum(pubRate)} msg/s (${fmtUs(pubCpuUs)} µs CPU/msg); drain ${fmtNum(d.distinct)} deliveries in ${del.wall.toFixed(1)}s = ${fmtNum(delRate)}/s (${fmtUs(delCpuUs)} µs CPU each; ${d.pulls} pulls, ${d.emptyPulls} empty)`,
    );
    // Free the room for the next point: subscriptions first, then the topic.
    for (const name of names) await client.json('DELETE', `/v1/subscriptions/${name}`);
    await client.json('DELETE', `/v1/topics/${topic}`);
  }
  output.push(`### 2. Subscriptions per topic: ${fmtNum(cfg.subMessages)} × ${fmtSize(cfg.size)} published, then every subscription drained (${target.label})`);
  output.push('');
  output.push(
    `A fresh topic per row with that many pull subscriptions (startAt earliest); publish in batches of ${cfg.batch}, ${cfg.concurrency} in flight; ` +
      `then ${cfg.pullers} pullers in all go round-robin over the subscriptions (pull max ${cfg.pullMax}, then ack). A delivery is one message to one subscription.`,
  );
  output.push('');
  output.push(
    table(
      ['subs', 'published', 'publish msg/s', 'publish CPU µs/msg', '× first', 'deliveries', 'drain s', 'deliveries/s', 'µs/delivery wall', '× first', 'server CPU µs/delivery', '× first', 'RSS after (LMDB)', 'errors'],
      rows,
    ),
  );
  if (points.some((p) => p.pubRough || p.delRough)) output.push('', roughFootnote);
  if (points.length > 1) {
    const a = points[0]!;
    const z = points[points.length - 1]!;
    const firstAt = `${a.subs} subscription${a.subs === 1 ? '' : 's'}`;
    const lastAt = `${z.subs}`;
    verdict('subscriptions, delivery', 'server CPU per delivery', a.delCpuUs, z.delCpuUs, firstAt, lastAt, a.delRough || z.delRough);
    verdict('subscriptions, delivery', 'wall time per delivery', a.delWallUs, z.delWallUs, firstAt, lastAt, a.delRough || z.delRough);
    // Publishing should not depend on how many pull subscriptions wait on the topic.
    verdict('subscriptions, publish', 'server CPU per published message', a.pubCpuUs, z.pubCpuUs, firstAt, lastAt, a.pubRough || z.pubRough);
  } else verdicts.push('- subscriptions: not enough points to tell');
}

// ---------------------------------------------------------------------------------------------------
// 3. Payload size

async function curvePayload(target: Target, client: Client): Promise<void> {
  const rows: string[][] = [];
  const points: { size: number; pubCpuUsKiB: number; pubWallUsKiB: number; drainCpuUsKiB: number; drainWallUsKiB: number; pubRough: boolean; drainRough: boolean }[] = [];
  for (const size of cfg.payloads) {
    if (target.abort.aborted) break;
    const q = `scale-payload-${size}`;
    const cap = Math.max(1, Math.min(cfg.payloadMessages, Math.floor(cfg.payloadBytes / size)));
    const pullMax = Math.max(1, Math.min(cfg.pullMax, Math.floor(cfg.pullBytes / size)));
    console.error(`▶ payload ${fmtSize(size)}: publish ≤ ${cfg.seconds}s / ${fmtNum(cap)} messages, then drain ≤ ${cfg.seconds}s (pull max ${pullMax})`);
    await client.ok('PUT', `/v1/queues/${q}`, {});
    const mp = meter(target);
    const p = await produce(client, {
      path: `/v1/queues/${q}/messages`,
      batch: cfg.batch,
      size,
      concurrency: cfg.concurrency,
      seconds: cfg.seconds,
      warmupSeconds: 0,
      maxRequests: Math.ceil(cap / cfg.batch) + 100_000,
      maxMessages: cap,
      abort: target.abort,
    });
    const pub = mp();
    const published = p.totalMessages;
    const md = meter(target);
    const c = await consume(client, {
      subPath: `/v1/queues/${q}`,
      pullers: cfg.pullers,
      pullMax,
      waitSeconds: 0,
      target: () => published,
      deadline: performance.now() + cfg.seconds * 1000,
      maxPulls: Math.ceil(published / pullMax) * 4 + 100_000,
      abort: target.abort,
    });
    const dr = md();
    const kib = size / 1024;
    const pubRate = published / pub.wall;
    const drainRate = c.acked / dr.wall;
    const pt = {
      size,
      pubWallUsKiB: (pub.wall * 1e6) / published / kib,
      pubCpuUsKiB: (pub.cpu * 1e6) / published / kib,
      drainWallUsKiB: (dr.wall * 1e6) / c.acked / kib,
      drainCpuUsKiB: (dr.cpu * 1e6) / c.acked / kib,
      pubRough: isRough(pub),
      drainRough: isRough(dr),
    };
    points.push(pt);
    const b = points[0]!;
    const errs = p.errors.total + p.badResults + c.errors.total + c.duplicates + c.invalidAcks;
    rows.push([
      fmtSize(size),
      fmtNum(published),
      pub.wall.toFixed(1),
      fmtNum(pubRate),
      fmtMBps(pubRate * size),
      roughMark(pt.pubRough, fmtUs((pub.cpu * 1e6) / published)),
      roughMark(pt.pubRough, fmtUs(pt.pubCpuUsKiB)),
      fmtRatio(pt.pubCpuUsKiB, b.pubCpuUsKiB),
      fmtNum(c.acked),
      dr.wall.toFixed(1),
      fmtNum(drainRate),
      fmtMBps(drainRate * size),
      roughMark(pt.drainRough, fmtUs((dr.cpu * 1e6) / c.acked)),
      roughMark(pt.drainRough, fmtUs(pt.drainCpuUsKiB)),
      fmtRatio(pt.drainCpuUsKiB, b.drainCpuUsKiB),
      target.memory(),
      String(errs),
    ]);
    const tag = `payload ${fmtSize(size)}`;
    if (p.errors.total > 0) notes.push(`${tag}: publish errors: ${p.errors.summary()}`);
    if (p.badResults > 0) notes.push(`${tag}: ${p.badResults} 2xx publish answers without one result per message`);
    if (c.errors.total > 0) notes.push(`${tag}: drain errors: ${c.errors.summary()}`);
    if (c.duplicates > 0) notes.push(`${tag}: ${c.duplicates} duplicate deliveries`);
    if (c.invalidAcks > 0) notes.push(`${tag}: ${c.invalidAcks} ackIds answered as invalid`);
    if (c.acked < published) notes.push(`${tag}: drained ${fmtNum(c.acked)} of ${fmtNum(published)} within ${cfg.seconds}s (the drain rate is over those)`);
    console.error(
      `  publish ${fmtNum(pubRate)} msg/s = ${fmtMBps(pubRate * size)} MB/s; drain ${fmtNum(c.acked)}/${fmtNum(published)} at ${fmtNum(drainRate)} msg/s = ${fmtMBps(drainRate * size)} MB/s`,
    );
    await client.json('DELETE', `/v1/queues/${q}`);
  }
  output.push(`### 3. Payload size (${target.label})`);
  output.push('');
  output.push(
    `A fresh queue per row; publish in batches of ${cfg.batch}, ${cfg.concurrency} in flight, for at most ${cfg.seconds}s and ${fmtNum(cfg.payloadMessages)} messages / ${fmtBytes(cfg.payloadBytes)}; ` +
      `then drain what was published for at most ${cfg.seconds}s (${cfg.pullers} pullers, pull max ${cfg.pullMax}, lowered to keep a pull under ${fmtBytes(cfg.pullBytes)}). ` +
      `MB = 10^6 bytes of payload; the per-KiB cost is what should stay flat if the cost is linear in the bytes.`,
  );
  output.push('');
  output.push(
    table(
      [
        'payload',
        'published',
        's',
        'publish msg/s',
        'MB/s',
        'CPU µs/msg',
        'CPU µs/KiB',
        '× first',
        'drained',
        's',
        'drain msg/s',
        'MB/s',
        'CPU µs/msg',
        'CPU µs/KiB',
        '× first',
        'RSS after (LMDB)',
        'errors',
      ],
      rows,
    ),
  );
  if (points.some((p) => p.pubRough || p.drainRough)) output.push('', roughFootnote);
  if (points.length > 1) {
    const a = points[0]!;
    const z = points[points.length - 1]!;
    const firstAt = fmtSize(a.size);
    const lastAt = fmtSize(z.size);
    const pr = a.pubRough || z.pubRough;
    const dr = a.drainRough || z.drainRough;
    verdict('payload, publish', 'server CPU per KiB', a.pubCpuUsKiB, z.pubCpuUsKiB, firstAt, lastAt, pr);
    verdict('payload, publish', 'wall time per KiB', a.pubWallUsKiB, z.pubWallUsKiB, firstAt, lastAt, pr);
    verdict('payload, drain', 'server CPU per KiB', a.drainCpuUsKiB, z.drainCpuUsKiB, firstAt, lastAt, dr);
    verdict('payload, drain', 'wall time per KiB', a.drainWallUsKiB, z.drainWallUsKiB, firstAt, lastAt, dr);
  } else verdicts.push('- payload: not enough points to tell');
}

// ---------------------------------------------------------------------------------------------------

// Ctrl-C: stop what we started (only that), then exit.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n[scale] ${sig}: stopping the server(s) this benchmark started`);
    const t = running;
    if (t) t.abort.aborted = true;
    void (t?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const started = new Date();
  const load0 = loadavg();
  console.error(
    `Herald scale curves: ${cpus().length} cores, node ${process.version}, ${cfg.nodes} node(s), ${cfg.durability} durability${cfg.quick ? ', --quick' : ''}; load average ${load0.map((l) => l.toFixed(2)).join(' ')}`,
  );
  buildBundle();
  const runners: Record<Curve, (t: Target, c: Client) => Promise<void>> = { backlog: curveBacklog, subs: curveSubs, payload: curvePayload };
  const sections: string[][] = [];
  for (const curve of cfg.curves) {
    output.length = 0;
    await withTarget(curve, runners[curve]);
    sections.push([...output]);
  }
  const out: string[] = [];
  out.push(`## Herald scale curves — ${started.toISOString()}${cfg.quick ? ' (--quick)' : ''}`);
  out.push('');
  out.push(`${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}; server: ${serverVersion()}`);
  out.push(
    `load average (1/5/15 min) at start ${load0.map((l) => l.toFixed(2)).join(' ')}, at end ${loadavg().map((l) => l.toFixed(2)).join(' ')} ` +
      '(above ~1.5 at the start means something else was using the 2 cores)',
  );
  out.push(`settings: ${JSON.stringify({ ...cfg, backlogMarks: backlogMarks() })}`);
  for (const s of sections) {
    if (s.length === 0) continue;
    out.push('');
    out.push(...s);
  }
  out.push('');
  out.push('### Does a cost grow faster than linearly? (cost per unit at the last point vs the first; flagged above 1.5×)');
  out.push('');
  out.push(...(verdicts.length > 0 ? verdicts : ['- no curve produced enough points']));
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
    const t = running;
    void (t?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
  },
);
