/**
 * Single-node throughput and latency benchmark (`npm run bench -- [flags]`).
 *
 * One Herald node runs as a real child process (fsync on, the default) with a fresh data dir per
 * scenario; this process is the load generator (undici Pool, keep-alive, fixed requests in flight)
 * and measures with performance.now(). Messages are 1 KiB of ASCII (`--size`).
 *
 *   (a) produce only: POST /v1/topics/{t}/messages in batches of 1 and of 16 (topic with one subscription)
 *   (b) consume only: a pre-filled backlog drained by concurrent pullers (pull, then ack the ackIds)
 *   (c) both at once: producers (batches of 16) and pullers on one subscription; publish-to-receive
 *       latency from a performance.now() stamp at the start of each message's data
 *
 * Flags (env BENCH_<NAME> in upper snake case works too, flags win):
 *   --seconds N          measured seconds of (a) and (c), after --warmup (default 10, warm-up 1)
 *   --concurrency N      produce requests in flight in (a) (default 64)
 *   --messages N         backlog for (b) (default 200000)
 *   --pullers N          concurrent pullers in (b) and (c) (default 8)
 *   --pull-max N         "max" per pull, 1–1000 (default 500)
 *   --mixed-producers N  publish requests in flight in (c) (default 32)
 *   --consume-seconds N  time limit of (b)'s drain (default 120)
 *   --size N             message bytes (default 1024)
 *   --phases list        produce1,produce16,consume,mixed (default all)
 *   --profile            run the server with --cpu-prof, summarise the top 15 self-time functions
 *   --profile-dir DIR    where the .cpuprofile files go (default a temp dir)
 *   --top N              functions in the profile summary (default 15)
 */
import { cpus, loadavg } from 'node:os';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from './lib/http.js';
import { consume, produce, type Abort } from './lib/load.js';
import { formatProfile, summarizeProfile } from './lib/profile.js';
import { cpuSecondsOf, serverVersion, startServer, tempDir, type BenchServer } from './lib/server.js';
import { fmtMs, fmtNum, table, type Samples } from './lib/stats.js';
import { numberFlag } from './lib/flags.js';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    concurrency: { type: 'string' },
    messages: { type: 'string' },
    pullers: { type: 'string' },
    'pull-max': { type: 'string' },
    'mixed-producers': { type: 'string' },
    'consume-seconds': { type: 'string' },
    size: { type: 'string' },
    phases: { type: 'string' },
    profile: { type: 'boolean' },
    'profile-dir': { type: 'string' },
    top: { type: 'string' },
  },
  allowPositionals: false,
});

function opt(name: keyof typeof flags, fallback: number): number {
  return numberFlag(flags, name, fallback);
}

const cfg = {
  seconds: opt('seconds', 10),
  warmup: opt('warmup', 1),
  concurrency: Math.max(1, Math.round(opt('concurrency', 64))),
  messages: Math.max(1, Math.round(opt('messages', 200_000))),
  pullers: Math.max(1, Math.round(opt('pullers', 8))),
  pullMax: Math.min(1000, Math.max(1, Math.round(opt('pull-max', 500)))),
  mixedProducers: Math.max(1, Math.round(opt('mixed-producers', 32))),
  consumeSeconds: opt('consume-seconds', 120),
  size: Math.max(16, Math.round(opt('size', 1024))),
  top: Math.max(1, Math.round(opt('top', 15))),
  phases: ((flags.phases as string | undefined) ?? process.env.BENCH_PHASES ?? 'produce1,produce16,consume,mixed').split(',').map((s) => s.trim()),
  profile: !!flags.profile || process.env.BENCH_PROFILE === '1',
  profileDir: (flags['profile-dir'] as string | undefined) ?? process.env.BENCH_PROFILE_DIR,
};
for (const p of cfg.phases) {
  if (!['produce1', 'produce16', 'consume', 'mixed'].includes(p)) throw new Error(`unknown phase ${p}`);
}

interface Row {
  scenario: string;
  messages: string;
  rate: string;
  latencyOf: string;
  p50: string;
  p99: string;
  max: string;
  errors: string;
  serverCpu: string;
  benchCpu: string;
}
const rows: Row[] = [];
const notes: string[] = [];
const profiles: { phase: string; text: string; file: string }[] = [];

function latencyRow(scenario: string, messages: number | undefined, rate: number | undefined, what: string, s: Samples, extra: Partial<Row> = {}): Row {
  const [p50, p99] = s.percentiles(50, 99);
  return {
    scenario,
    messages: messages === undefined ? '' : fmtNum(messages),
    rate: rate === undefined ? '' : fmtNum(rate),
    latencyOf: `${what} (n=${fmtNum(s.count)})`,
    p50: fmtMs(p50!),
    p99: fmtMs(p99!),
    max: fmtMs(s.max()),
    errors: '',
    serverCpu: '',
    benchCpu: '',
    ...extra,
  };
}

/** CPU use (in cores) of the server and of this process between `begin()` and `end()`. */
function cpuMeter(server: BenchServer, window: Window) {
  let s0 = 0;
  let b0 = process.cpuUsage();
  let t0 = 0;
  return {
    begin() {
      s0 = cpuSecondsOf(server.serverPid);
      b0 = process.cpuUsage();
      t0 = performance.now();
      window.fromUs = monoUs();
    },
    end(): { server: string; bench: string } {
      window.toUs = monoUs();
      const wall = (performance.now() - t0) / 1000;
      const s = cpuSecondsOf(server.serverPid) - s0;
      const b = process.cpuUsage(b0);
      return {
        server: `${Math.round((100 * s) / wall)}%`,
        bench: `${Math.round((100 * (b.user + b.system)) / 1e6 / wall)}%`,
      };
    },
  };
}

const profileRoot = cfg.profile ? (cfg.profileDir ?? tempDir('herald-bench-prof-')) : undefined;

const monoUs = () => Number(process.hrtime.bigint() / 1000n);

/** The load window of the current phase, to keep the profile to it (setup and pre-fill left out). */
interface Window {
  fromUs: number;
  toUs: number;
}

async function withServer<T>(
  phase: string,
  body: (server: BenchServer, client: Client, abort: Abort, window: Window) => Promise<T>,
  connections: number,
): Promise<T> {
  const window: Window = { fromUs: 0, toUs: Number.MAX_SAFE_INTEGER };
  const profileDir = profileRoot ? join(profileRoot, phase) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const server = await startServer(profileDir ? { profileDir } : {});
  const abort: Abort = { aborted: false };
  const onExit = setInterval(() => {
    try {
      process.kill(server.serverPid, 0);
    } catch {
      abort.aborted = true;
      abort.reason = `server process ${server.serverPid} is gone`;
    }
  }, 250);
  const client = new Client(server.url, connections);
  try {
    return await body(server, client, abort, window);
  } finally {
    clearInterval(onExit);
    if (abort.aborted) notes.push(`${phase}: aborted: ${abort.reason}; server output:\n${server.output().slice(-2000)}`);
    await client.close().catch(() => {});
    const file = await server.stop();
    const stderrLines = server
      .output()
      .split('\n')
      .filter((l) => l && !/herald listening on|SIGTERM, stopping/.test(l));
    if (stderrLines.length > 0) notes.push(`${phase}: server printed:\n${stderrLines.slice(0, 20).join('\n')}`);
    if (profileDir) {
      if (file) profiles.push({ phase, file, text: formatProfile(summarizeProfile(file, cfg.top, window)) });
      else notes.push(`${phase}: no .cpuprofile was written to ${profileDir}`);
    }
  }
}

async function phaseProduce(batch: number): Promise<void> {
  const phase = `produce${batch}`;
  const label = `(a) produce, batch ${batch}, ${cfg.concurrency} in flight`;
  console.error(`▶ ${label}: ${cfg.warmup}s warm-up + ${cfg.seconds}s`);
  await withServer(
    phase,
    async (server, client, abort, window) => {
      const topic = `bench-${phase}`;
      await client.ok('PUT', `/v1/topics/${topic}`, {});
      await client.ok('PUT', `/v1/subscriptions/${topic}-sub`, { topic, startAt: 'earliest' });
      const cpu = cpuMeter(server, window);
      cpu.begin();
      const r = await produce(client, {
        path: `/v1/topics/${topic}/messages`,
        batch,
        size: cfg.size,
        concurrency: cfg.concurrency,
        seconds: cfg.seconds,
        warmupSeconds: cfg.warmup,
        maxRequests: 50_000_000,
        abort,
      });
      const c = cpu.end();
      const rate = r.measuredMessages / r.measuredSeconds;
      const info = await client.ok('GET', `/v1/topics/${topic}`);
      const errs = r.errors.total + r.badResults;
      rows.push(
        latencyRow(label, r.measuredMessages, rate, 'POST round trip', r.latency, {
          errors: String(errs),
          serverCpu: c.server,
          benchCpu: c.bench,
        }),
      );
      if (r.errors.total > 0) notes.push(`${label}: errors: ${r.errors.summary()}`);
      if (r.badResults > 0) notes.push(`${label}: ${r.badResults} 2xx answers without one result per message`);
      if (info.messages !== r.totalMessages) {
        notes.push(`${label}: published ${r.totalMessages} (2xx) but the topic reports ${info.messages} messages (lastSeq ${info.lastSeq})`);
      }
      console.error(`  ${fmtNum(rate)} msg/s, ${fmtNum(r.totalMessages)} messages in all, topic holds ${fmtNum(info.messages)}`);
    },
    cfg.concurrency + 4,
  );
}

async function phaseConsume(): Promise<void> {
  const label = `(b) consume+ack, ${cfg.pullers} pullers, max ${cfg.pullMax}`;
  await withServer(
    'consume',
    async (server, client, abort, window) => {
      const topic = 'bench-consume';
      const sub = `${topic}-sub`;
      await client.ok('PUT', `/v1/topics/${topic}`, {});
      await client.ok('PUT', `/v1/subscriptions/${sub}`, { topic, startAt: 'earliest' });
      console.error(`▶ (b) pre-filling ${fmtNum(cfg.messages)} messages in batches of 500, 8 in flight`);
      const fill = await produce(client, {
        path: `/v1/topics/${topic}/messages`,
        batch: 500,
        size: cfg.size,
        concurrency: 8,
        seconds: 600,
        warmupSeconds: 0,
        maxRequests: Math.ceil(cfg.messages / 500) + 10_000,
        maxMessages: cfg.messages,
        abort,
      });
      const fillRate = fill.totalMessages / fill.measuredSeconds;
      rows.push(
        latencyRow(`(b0) pre-fill, batch 500, 8 in flight`, fill.totalMessages, fillRate, 'POST round trip', fill.latency, {
          errors: String(fill.errors.total + fill.badResults),
        }),
      );
      if (fill.errors.total > 0) notes.push(`pre-fill errors: ${fill.errors.summary()}`);
      const before = await client.ok('GET', `/v1/subscriptions/${sub}`);
      if (before.backlog !== fill.totalMessages) notes.push(`(b) after pre-fill the backlog is ${before.backlog}, expected ${fill.totalMessages}`);
      console.error(`  pre-filled ${fmtNum(fill.totalMessages)} at ${fmtNum(fillRate)} msg/s; backlog ${fmtNum(before.backlog)}`);
      console.error(`▶ ${label}: draining (limit ${cfg.consumeSeconds}s)`);
      const target = fill.totalMessages;
      const cpu = cpuMeter(server, window);
      cpu.begin();
      const r = await consume(client, {
        subPath: `/v1/subscriptions/${sub}`,
        pullers: cfg.pullers,
        pullMax: cfg.pullMax,
        waitSeconds: 0,
        target: () => target,
        deadline: performance.now() + cfg.consumeSeconds * 1000,
        maxPulls: 10_000_000,
        abort,
      });
      const c = cpu.end();
      const secs = Math.max(0.001, (r.lastAckAt - r.startedAt) / 1000);
      const rate = r.acked / secs;
      const after = await client.ok('GET', `/v1/subscriptions/${sub}`);
      const errs = r.errors.total;
      rows.push(latencyRow(label, r.acked, rate, 'pull round trip', r.pullLatency, { errors: String(errs), serverCpu: c.server, benchCpu: c.bench }));
      rows.push(latencyRow('', undefined, undefined, 'ack round trip', r.ackLatency));
      if (r.errors.total > 0) notes.push(`${label}: errors: ${r.errors.summary()}`);
      if (r.distinct < target) notes.push(`(b) only ${fmtNum(r.distinct)} of ${fmtNum(target)} messages were received within ${cfg.consumeSeconds}s`);
      if (r.duplicates > 0) notes.push(`(b) ${r.duplicates} duplicate deliveries`);
      if (r.invalidAcks > 0) notes.push(`(b) ${r.invalidAcks} ackIds answered as invalid`);
      if (after.backlog !== target - r.acked) notes.push(`(b) after the drain the backlog is ${after.backlog} (acked ${r.acked} of ${target})`);
      console.error(
        `  acked ${fmtNum(r.acked)} in ${secs.toFixed(1)}s = ${fmtNum(rate)} msg/s; pulls ${r.pulls} (${r.emptyPulls} empty); backlog now ${after.backlog}, acked stat ${after.acked}`,
      );
    },
    cfg.pullers + 12,
  );
}

async function phaseMixed(): Promise<void> {
  const label = `(c) produce b16 ×${cfg.mixedProducers} + ${cfg.pullers} pullers max ${cfg.pullMax}`;
  console.error(`▶ ${label}: ${cfg.warmup}s warm-up + ${cfg.seconds}s, then drain`);
  await withServer(
    'mixed',
    async (server, client, abort, window) => {
      const topic = 'bench-mixed';
      const sub = `${topic}-sub`;
      await client.ok('PUT', `/v1/topics/${topic}`, {});
      await client.ok('PUT', `/v1/subscriptions/${sub}`, { topic, startAt: 'earliest' });
      const cpu = cpuMeter(server, window);
      cpu.begin();
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
        abort,
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
        abort,
        stamped: true,
      });
      const p = await producer;
      const produceEnd = performance.now();
      const c = cpu.end();
      const r = await consumer;
      const warmEnd = t0 + cfg.warmup * 1000;
      let ackedInWindow = 0;
      for (const [t, n] of r.ackTimeline) if (t >= warmEnd && t <= produceEnd) ackedInWindow += n;
      const windowSecs = Math.max(0.001, (produceEnd - warmEnd) / 1000);
      const pRate = p.measuredMessages / p.measuredSeconds;
      const cRate = ackedInWindow / windowSecs;
      const after = await client.ok('GET', `/v1/subscriptions/${sub}`);
      rows.push(
        latencyRow(`${label}: produced`, p.measuredMessages, pRate, 'POST round trip', p.latency, {
          errors: String(p.errors.total + p.badResults),
          serverCpu: c.server,
          benchCpu: c.bench,
        }),
      );
      rows.push(latencyRow(`${label}: consumed`, ackedInWindow, cRate, 'pull round trip', r.pullLatency, { errors: String(r.errors.total) }));
      rows.push(latencyRow('', undefined, undefined, 'ack round trip', r.ackLatency));
      rows.push(latencyRow('', undefined, undefined, 'publish→receive', r.e2eLatency));
      if (p.errors.total > 0) notes.push(`(c) produce errors: ${p.errors.summary()}`);
      if (r.errors.total > 0) notes.push(`(c) consume errors: ${r.errors.summary()}`);
      if (r.distinct < p.totalMessages) {
        notes.push(`(c) ${fmtNum(p.totalMessages)} published, only ${fmtNum(r.distinct)} received by the end of the ${drainSeconds}s drain (backlog stat ${after.backlog})`);
      }
      if (r.duplicates > 0) notes.push(`(c) ${r.duplicates} duplicate deliveries`);
      if (r.invalidAcks > 0) notes.push(`(c) ${r.invalidAcks} ackIds answered as invalid`);
      console.error(
        `  produced ${fmtNum(pRate)} msg/s, consumed ${fmtNum(cRate)} msg/s in the window; ${fmtNum(p.totalMessages)} published, ${fmtNum(r.distinct)} received in all; backlog now ${after.backlog}`,
      );
    },
    cfg.mixedProducers + cfg.pullers + 12,
  );
}

async function main(): Promise<void> {
  const started = new Date();
  const startLoad = loadavg();
  console.error(
    `Herald single-node benchmark: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, ${cfg.size}-byte messages, fsync on` +
      (profileRoot ? `, profiling into ${profileRoot}` : ''),
  );
  for (const phase of cfg.phases) {
    if (phase === 'produce1') await phaseProduce(1);
    else if (phase === 'produce16') await phaseProduce(16);
    else if (phase === 'consume') await phaseConsume();
    else if (phase === 'mixed') await phaseMixed();
  }
  const out: string[] = [];
  out.push(`## Herald single node — ${started.toISOString()}`);
  out.push('');
  out.push(
    `${cpus().length} cores, node ${process.version}, ${cfg.size}-byte messages, fsync on, load generator in this process, server in a child process` +
      (cfg.profile ? ' (server under --cpu-prof: figures are lower than without it)' : ''),
  );
  out.push(`server: ${serverVersion()}`);
  out.push(
    `load average (1/5/15 min) at start ${startLoad.map((l) => l.toFixed(2)).join(' ')}, at end ${loadavg().map((l) => l.toFixed(2)).join(' ')} ` +
      '(above ~1.5 at the start means something else was using the 2 cores)',
  );
  out.push(`settings: ${JSON.stringify({ ...cfg, profileDir: profileRoot })}`);
  out.push('');
  out.push(
    table(
      ['scenario', 'messages', 'msg/s', 'latency of', 'p50 ms', 'p99 ms', 'max ms', 'non-2xx/err', 'server CPU', 'bench CPU'],
      rows.map((r) => [r.scenario, r.messages, r.rate, r.latencyOf, r.p50, r.p99, r.max, r.errors, r.serverCpu, r.benchCpu]),
    ),
  );
  out.push('');
  out.push('Targets: ≥100,000 msg/s produced in batches of 16, ≥100,000 msg/s consumed with acks.');
  if (notes.length > 0) {
    out.push('');
    out.push('Notes:');
    for (const n of notes) out.push(`- ${n}`);
  }
  for (const p of profiles) {
    out.push('');
    out.push(`### Server CPU profile: ${p.phase}, load window only (${p.file})`);
    out.push('');
    out.push(p.text);
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
