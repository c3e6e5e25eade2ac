/**
 * Memory benchmark (`npx tsx bench/memory.ts [flags]`): publishes a backlog of 1 KiB messages into a
 * topic with one subscription (nothing consumes), then reads the server's VmRSS from
 * /proc/<pid>/status. Goal: under 300 MB with 1,000,000 messages waiting.
 *
 * Flags (env BENCH_<NAME> works too): --messages N (default 1000000), --batch N (100–1000, default
 * 500), --concurrency N (default 4), --seconds N (time limit of the publishing, default 240),
 * --size N (default 1024), --settle N (seconds to wait before the final reading, default 5).
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from './lib/http.js';
import { produce, type Abort } from './lib/load.js';
import { dirBytes, mappedRssOf, memoryOf, serverVersion, startServer } from './lib/server.js';
import { fmtBytes, fmtMs, fmtNum, table } from './lib/stats.js';
import { numberFlag } from './lib/flags.js';

const { values: flags } = parseArgs({
  options: {
    messages: { type: 'string' },
    batch: { type: 'string' },
    concurrency: { type: 'string' },
    seconds: { type: 'string' },
    size: { type: 'string' },
    settle: { type: 'string' },
  },
});
function opt(name: keyof typeof flags, fallback: number): number {
  return numberFlag(flags, name, fallback);
}
const cfg = {
  messages: Math.max(1, Math.round(opt('messages', 1_000_000))),
  batch: Math.min(1000, Math.max(1, Math.round(opt('batch', 500)))),
  concurrency: Math.max(1, Math.round(opt('concurrency', 4))),
  seconds: opt('seconds', 240),
  size: Math.max(16, Math.round(opt('size', 1024))),
  settle: opt('settle', 5),
};
const goalBytes = 300 * 1000 * 1000;

async function main(): Promise<void> {
  const started = new Date();
  console.error(`Herald memory benchmark: ${fmtNum(cfg.messages)} × ${cfg.size} B, batches of ${cfg.batch}, ${cfg.concurrency} in flight, limit ${cfg.seconds}s`);
  const server = await startServer();
  const client = new Client(server.url, cfg.concurrency + 2);
  const abort: Abort = { aborted: false };
  const samples: { t: number; published: number; rss: number; anon: number }[] = [];
  let published = 0;
  const t0 = performance.now();
  const baseline = memoryOf(server.serverPid);
  const sampler = setInterval(() => {
    try {
      const m = memoryOf(server.serverPid);
      samples.push({ t: (performance.now() - t0) / 1000, published, rss: m.rss, anon: m.anon });
    } catch {
      abort.aborted = true;
      abort.reason = `server process ${server.serverPid} is gone`;
    }
  }, 500);
  const notes: string[] = [];
  try {
    const topic = 'bench-memory';
    const sub = `${topic}-sub`;
    await client.ok('PUT', `/v1/topics/${topic}`, {});
    await client.ok('PUT', `/v1/subscriptions/${sub}`, { topic, startAt: 'earliest' });
    // Progress for the sampler: poll the topic's count once a second rather than hooking the loop.
    const progress = setInterval(() => {
      client.json('GET', `/v1/topics/${topic}`).then(
        (r) => {
          if (r.status === 200) published = r.body.messages;
        },
        () => {},
      );
    }, 1000);
    const r = await produce(client, {
      path: `/v1/topics/${topic}/messages`,
      batch: cfg.batch,
      size: cfg.size,
      concurrency: cfg.concurrency,
      seconds: cfg.seconds,
      warmupSeconds: 0,
      maxRequests: Math.ceil(cfg.messages / cfg.batch) + 10_000,
      maxMessages: cfg.messages,
      abort,
    });
    clearInterval(progress);
    const publishSecs = (performance.now() - t0) / 1000;
    const afterPublish = memoryOf(server.serverPid);
    await new Promise((res) => setTimeout(res, cfg.settle * 1000));
    const settled = memoryOf(server.serverPid);
    const topicInfo = await client.ok('GET', `/v1/topics/${topic}`);
    const subInfo = await client.ok('GET', `/v1/subscriptions/${sub}`);
    const final = memoryOf(server.serverPid);
    const lmdbResident = mappedRssOf(server.serverPid, '/herald.mdb');
    if (r.errors.total > 0) notes.push(`publish errors: ${r.errors.summary()}`);
    if (r.totalMessages < cfg.messages) notes.push(`only ${fmtNum(r.totalMessages)} of ${fmtNum(cfg.messages)} published within ${cfg.seconds}s`);
    if (topicInfo.messages !== r.totalMessages) notes.push(`topic reports ${topicInfo.messages} messages, ${r.totalMessages} were acknowledged`);
    if (subInfo.backlog !== r.totalMessages) notes.push(`subscription backlog is ${subInfo.backlog}, expected ${r.totalMessages}`);
    if (abort.aborted) notes.push(`aborted: ${abort.reason}`);
    const peakSample = samples.reduce((m, s) => (s.rss > m ? s.rss : m), 0);
    const out: string[] = [];
    out.push(`## Herald memory — ${started.toISOString()}`);
    out.push('');
    out.push(`${cpus().length} cores, node ${process.version}; settings: ${JSON.stringify(cfg)}; server pid ${server.serverPid}`);
    out.push(`server: ${serverVersion()}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    out.push('');
    out.push(
      `published ${fmtNum(r.totalMessages)} messages in ${publishSecs.toFixed(1)} s (${fmtNum(r.totalMessages / publishSecs)} msg/s, ` +
        `POST p50 ${fmtMs(r.latency.percentiles(50)[0]!)} ms, p99 ${fmtMs(r.latency.percentiles(99)[0]!)} ms); ` +
        `topic messages ${fmtNum(topicInfo.messages)}, bytes ${fmtNum(topicInfo.bytes)}; subscription backlog ${fmtNum(subInfo.backlog)}`,
    );
    out.push('');
    out.push(
      table(
        ['reading', 'VmRSS', 'RssAnon', 'RssFile', 'VmHWM (peak)'],
        [
          ['before publishing', fmtBytes(baseline.rss), fmtBytes(baseline.anon), fmtBytes(baseline.file), fmtBytes(baseline.hwm)],
          ['right after publishing', fmtBytes(afterPublish.rss), fmtBytes(afterPublish.anon), fmtBytes(afterPublish.file), fmtBytes(afterPublish.hwm)],
          [`after ${cfg.settle}s idle`, fmtBytes(settled.rss), fmtBytes(settled.anon), fmtBytes(settled.file), fmtBytes(settled.hwm)],
          ['after GET topic + subscription', fmtBytes(final.rss), fmtBytes(final.anon), fmtBytes(final.file), fmtBytes(final.hwm)],
        ],
      ),
    );
    out.push('');
    out.push(
      `Of the final VmRSS, ${fmtBytes(lmdbResident)} are resident pages of LMDB's memory-mapped herald.mdb (file-backed; the data dir, ` +
        `segment files included, is ${fmtBytes(dirBytes(server.dataDir))} on disk); the rest, ${fmtBytes(final.rss - lmdbResident)}, is the heap, code and other mappings.`,
    );
    out.push('');
    out.push(
      `VmRSS now ${(final.rss / 1e6).toFixed(0)} MB = ${fmtBytes(final.rss)} (goal < 300 MB: ${final.rss < goalBytes ? 'met' : 'NOT met'}); peak VmHWM ${(final.hwm / 1e6).toFixed(0)} MB ` +
        `(goal ${final.hwm < goalBytes ? 'met' : 'NOT met'} at the peak); highest 0.5 s sample ${(peakSample / 1e6).toFixed(0)} MB`,
    );
    // A coarse trace of RSS against progress: ten points.
    if (samples.length > 0) {
      const step = Math.max(1, Math.floor(samples.length / 10));
      const trace = samples.filter((_, i) => i % step === 0 || i === samples.length - 1);
      out.push('');
      out.push(table(['t s', 'published', 'VmRSS', 'RssAnon'], trace.map((s) => [s.t.toFixed(1), fmtNum(s.published), fmtBytes(s.rss), fmtBytes(s.anon)])));
    }
    if (notes.length > 0) {
      out.push('');
      out.push('Notes:');
      for (const n of notes) out.push(`- ${n}`);
    }
    console.log(out.join('\n'));
  } finally {
    clearInterval(sampler);
    await client.close().catch(() => {});
    await server.stop();
    const extra = server
      .output()
      .split('\n')
      .filter((l) => l && !/herald listening on|SIGTERM, stopping/.test(l));
    if (extra.length > 0) console.log(`\nserver printed:\n${extra.slice(0, 20).join('\n')}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
