/**
 * Herald side by side with RabbitMQ and NATS JetStream (`npm run bench:peers -- [flags]`, issue 6).
 *
 * Each system runs as a local 3-node group on 127.0.0.1 with its data in temp dirs, one system at a
 * time (the machine has 2 cores: they must not compete): RabbitMQ 3 nodes with a quorum queue, NATS
 * JetStream 3 nodes with a file stream of 3 replicas (both from Debian's packages, installed with
 * apt-get if their binaries are missing), Herald 3 nodes with sync durability. The load generator is
 * this process and has the same shape for all (bench/lib/peers/scenarios.ts): 1 KiB messages,
 * publisher confirms, consumer acks, 1,000 messages unconfirmed / unacked. Each system is started once
 * and gets a fresh queue or stream for every scenario and run; stopped at the end, and only what was
 * started here is stopped. If a system cannot start, the report says why and the others go on.
 *
 * Flags (env BENCH_<NAME> works too, flags win):
 *   --runs N           runs of every scenario; each figure is the median (default 3)
 *   --peers list       herald,rabbitmq,nats (default all three); herald-relaxed adds Herald with
 *                      --durability relaxed (NATS 2.9 confirms before fsync), herald-ws Herald
 *                      sync with the WebSocket consumer
 *   --scenarios list   a,b,c,d (default all)
 *   --seconds N        measured seconds of (a), (c) and (d) (default 10), after --warmup (default 1)
 *   --inflight N       unconfirmed publishes and unacked deliveries per client (default 1000)
 *   --backlog N        messages drained in (b) (default 200000)
 *   --drain-seconds N  time limit to publish and to drain the backlog of (b) (default 120)
 *   --rate N           msg/s published in (d) (default 1000)
 *   --size N           message bytes (default 1024)
 *   --settle-seconds N after a fresh queue or stream (the previous one deleted), wait N s (default 3)
 *   --herald-consumer K  pull (HTTP pull + ack, default) or ws (WebSocket with credits = --inflight)
 *   --herald-publisher K http (POST batches, default) or ws (the publishing WebSocket: one socket,
 *                      a frame per batch, the same 1,000 messages unconfirmed)
 */
import { cpus, loadavg, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { HeraldPeer } from './lib/peers/herald.js';
import { NatsPeer } from './lib/peers/nats.js';
import { RabbitPeer } from './lib/peers/rabbitmq.js';
import { scenarios, type Figures, type ScenarioConfig, type ScenarioKey } from './lib/peers/scenarios.js';
import type { Peer } from './lib/peers/types.js';
import { serverVersion } from './lib/server.js';
import { fmtMs, fmtNum, table } from './lib/stats.js';
import { flagText, numberFlag } from './lib/flags.js';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string' },
    peers: { type: 'string' },
    scenarios: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    inflight: { type: 'string' },
    backlog: { type: 'string' },
    'drain-seconds': { type: 'string' },
    rate: { type: 'string' },
    size: { type: 'string' },
    'herald-consumer': { type: 'string' },
    'herald-publisher': { type: 'string' },
    'settle-seconds': { type: 'string' },
  },
  allowPositionals: false,
});

function opt(name: keyof typeof flags, fallback: number): number {
  return numberFlag(flags, name, fallback, { positive: true });
}
function list(name: 'peers' | 'scenarios', fallback: string, known: string[]): string[] {
  const raw = flagText(flags, name) ?? fallback;
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!known.includes(i)) throw new Error(`--${name}: unknown ${i} (known: ${known.join(',')})`);
  return items;
}

const peerKeys = ['herald', 'herald-ws', 'herald-relaxed', 'rabbitmq', 'nats'] as const;
type PeerKey = (typeof peerKeys)[number];
const runs = Math.round(opt('runs', 3));
const size = Math.round(opt('size', 1024));
const selectedPeers = list('peers', 'herald,rabbitmq,nats', [...peerKeys]) as PeerKey[];
const selectedScenarios = list('scenarios', 'a,b,c,d', Object.keys(scenarios)) as ScenarioKey[];
const cfg: ScenarioConfig = {
  seconds: opt('seconds', 10),
  warmup: opt('warmup', 1),
  inflight: Math.round(opt('inflight', 1000)),
  backlog: Math.round(opt('backlog', 200_000)),
  drainSeconds: opt('drain-seconds', 120),
  rate: opt('rate', 1000),
  settleSeconds: flags['settle-seconds'] === '0' ? 0 : opt('settle-seconds', 3),
};

const heraldConsumer = (flags['herald-consumer'] as string | undefined) ?? process.env.BENCH_HERALD_CONSUMER ?? 'pull';
if (heraldConsumer !== 'pull' && heraldConsumer !== 'ws') throw new Error(`--herald-consumer is pull or ws, not ${heraldConsumer}`);
const heraldPublisher = (flags['herald-publisher'] as string | undefined) ?? process.env.BENCH_HERALD_PUBLISHER ?? 'http';
if (heraldPublisher !== 'http' && heraldPublisher !== 'ws') throw new Error(`--herald-publisher is http or ws, not ${heraldPublisher}`);
// The bundle is built once, before the first Herald variant starts.
let built = false;
const herald = (durability: 'sync' | 'relaxed', consumer: 'pull' | 'ws') => {
  const build = !built;
  built = true;
  return HeraldPeer.start(size, durability, consumer, build, heraldPublisher);
};
const starters: Record<PeerKey, () => Promise<Peer>> = {
  herald: () => herald('sync', heraldConsumer),
  'herald-ws': () => herald('sync', 'ws'),
  'herald-relaxed': () => herald('relaxed', heraldConsumer),
  rabbitmq: () => RabbitPeer.start(size),
  nats: () => NatsPeer.start(size),
};
const displayName: Record<PeerKey, string> = { herald: 'Herald', 'herald-ws': 'Herald WS', 'herald-relaxed': 'Herald relaxed', rabbitmq: 'RabbitMQ', nats: 'NATS JetStream' };

/** figures[peer][scenario] = one Figures per run. */
const figures = new Map<PeerKey, Map<ScenarioKey, Figures[]>>();
const notes: string[] = [];
const described: string[] = [];
let running: Peer | undefined;

// Ctrl-C: stop what we started (only that), then exit.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n[peers] ${sig}: stopping what this benchmark started`);
    void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

const startedAt = new Date();
const load0 = loadavg();

for (const key of selectedPeers) {
  const perScenario = new Map<ScenarioKey, Figures[]>();
  figures.set(key, perScenario);
  console.log(`[peers] starting ${displayName[key]} (3 nodes)`);
  let peer: Peer;
  try {
    peer = await starters[key]();
  } catch (e) {
    const why = `${displayName[key]} could not start: ${(e as Error).message.slice(0, 1500)}`;
    console.log(`[peers] ${why}`);
    notes.push(why);
    continue;
  }
  running = peer;
  const peerLoad = loadavg()[0]!.toFixed(2);
  try {
    for (let run = 1; run <= runs; run++) {
      for (const s of selectedScenarios) {
        const t0 = Date.now();
        let f: Figures;
        try {
          f = await scenarios[s].run(peer, cfg);
        } catch (e) {
          f = { note: `failed: ${(e as Error).message.slice(0, 300)}` };
        }
        if (!perScenario.has(s)) perScenario.set(s, []);
        perScenario.get(s)!.push(f);
        const parts = [
          f.produced !== undefined ? `produced ${fmtNum(f.produced)}/s` : '',
          f.consumed !== undefined ? `consumed ${fmtNum(f.consumed)}/s` : '',
          f.p50 !== undefined ? `p50 ${fmtMs(f.p50)} ms p99 ${fmtMs(f.p99 ?? NaN)} ms` : '',
          f.note ?? '',
        ].filter(Boolean);
        console.log(`[peers] ${displayName[key]} run ${run} ${scenarios[s].title}: ${parts.join(', ')} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
        if (f.note && /failed|only|of \d/.test(f.note)) notes.push(`${displayName[key]} run ${run} ${scenarios[s].title}: ${f.note}`);
      }
    }
  } finally {
    // After the runs: it names what the first reset found. The load average says whether something
    // else on the machine competed for the 2 cores meanwhile.
    described.push(`${peer.describe()}; load average ${peerLoad} at start, ${loadavg()[0]!.toFixed(2)} at end`);
    console.log(`[peers] stopping ${displayName[key]}`);
    await peer.stop().catch((e) => notes.push(`${displayName[key]} stop: ${(e as Error).message}`));
    running = undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// The report: medians, and Herald's ratio to each peer (> 1 means Herald is better: its rate over
// the peer's, or the peer's latency over Herald's).

function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

interface Metric {
  label: string;
  scenario: ScenarioKey;
  pick: (f: Figures) => number | undefined;
  higherIsBetter: boolean;
  fmt: (n: number) => string;
}
const allMetrics: Metric[] = [
  { label: '(a) produce only, msg/s', scenario: 'a', pick: (f) => f.produced, higherIsBetter: true, fmt: (n) => fmtNum(n) },
  { label: `(b) consume a ${fmtNum(cfg.backlog)} backlog, msg/s`, scenario: 'b', pick: (f) => f.consumed, higherIsBetter: true, fmt: (n) => fmtNum(n) },
  { label: '(c) both at once: produced msg/s', scenario: 'c', pick: (f) => f.produced, higherIsBetter: true, fmt: (n) => fmtNum(n) },
  { label: '(c) both at once: consumed msg/s', scenario: 'c', pick: (f) => f.consumed, higherIsBetter: true, fmt: (n) => fmtNum(n) },
  { label: `(d) ${fmtNum(cfg.rate)} msg/s: publish→consume p50 ms`, scenario: 'd', pick: (f) => f.p50, higherIsBetter: false, fmt: fmtMs },
  { label: `(d) ${fmtNum(cfg.rate)} msg/s: publish→consume p99 ms`, scenario: 'd', pick: (f) => f.p99, higherIsBetter: false, fmt: fmtMs },
];
const metrics = allMetrics.filter((m) => selectedScenarios.includes(m.scenario));

const value = (peer: PeerKey, m: Metric) => median((figures.get(peer)?.get(m.scenario) ?? []).map((f) => m.pick(f) ?? NaN));
const heralds = selectedPeers.filter((p) => p.startsWith('herald'));
const others = selectedPeers.filter((p) => !p.startsWith('herald'));
const header = ['scenario', ...selectedPeers.map((p) => displayName[p])];
for (const h of heralds) for (const o of others) header.push(`${displayName[h]} ÷ ${displayName[o]}`);
const rows = metrics.map((m) => {
  const cells = [m.label, ...selectedPeers.map((p) => m.fmt(value(p, m)))];
  for (const h of heralds)
    for (const o of others) {
      const hv = value(h, m);
      const ov = value(o, m);
      const ratio = m.higherIsBetter ? hv / ov : ov / hv;
      cells.push(Number.isFinite(ratio) ? ratio.toFixed(2) : '-');
    }
  return cells;
});

const cpu = cpus();
console.log('');
console.log(`Herald vs RabbitMQ vs NATS JetStream, ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC (${Math.round((Date.now() - startedAt.getTime()) / 60000)} min)`);
console.log(`machine: ${cpu.length} cores (${cpu[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GB, Linux ${release()}, node ${process.version}; load average at start ${load0.map((l) => l.toFixed(2)).join(' ')}`);
console.log(`herald: ${serverVersion()}`);
for (const d of described) console.log(`- ${d}`);
console.log(
  `load: ${size}-byte messages, ${fmtNum(cfg.inflight)} unconfirmed publishes and ${fmtNum(cfg.inflight)} unacked deliveries per client; ` +
    `(a), (c), (d): ${cfg.warmup} s warm-up + ${cfg.seconds} s measured; (b) backlog ${fmtNum(cfg.backlog)}; (d) ${fmtNum(cfg.rate)} msg/s. ` +
    `Median of ${runs} run${runs === 1 ? '' : 's'}; ratios > 1 mean Herald is ahead (rate ÷ rate, or the peer's latency ÷ Herald's).`,
);
console.log('');
console.log(table(header, rows));
if (runs > 1) {
  console.log('\nEvery run:');
  const detail: string[][] = [];
  for (const p of selectedPeers)
    for (const m of metrics) {
      const vals = (figures.get(p)?.get(m.scenario) ?? []).map((f) => m.pick(f));
      if (vals.length) detail.push([displayName[p], m.label, vals.map((v) => (v === undefined ? '-' : m.fmt(v))).join(' / ')]);
    }
  console.log(table(['system', 'scenario', 'runs'], detail));
}
if (notes.length) {
  console.log('\nNotes:');
  for (const n of notes) console.log(`- ${n}`);
}
process.exit(0);
