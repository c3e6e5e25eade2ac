/**
 * Push benchmark (`npm run bench:push [-- flags]`): webhook deliveries/s, WebSocket messages/s with
 * acks, and publish-to-receiver latency on a 3-node cluster. 1 KiB messages, everything on 127.0.0.1.
 *
 *   (a) webhooks, 1 subscription: a backlog of --messages is pre-filled, then a push subscription
 *       (startAt earliest, --max-in-flight) drains it into a local receiver that answers 204; rate =
 *       acked / time until the backlog is 0.
 *   (b) webhooks, --subs subscriptions on one topic, each draining --messages-per-sub (default 64 in
 *       flight each): total deliveries / time.
 *   (c) WebSocket: a backlog of --messages drained by one socket that keeps --credits credits out and
 *       acks in batches of --ack-batch.
 *   (d) latency: a 3-node cluster (sync), --rate msg/s published (batches of 10, stamped) to the leader
 *       for --seconds; a push subscription delivers to the receiver, which measures publish→receive
 *       (the first second is warm-up and not counted; --show-slow says when the slow ones came).
 * The receiver runs in this process (node:http, keep-alive). Nodes run from the esbuild bundle with
 * --allow-private-webhooks, as `npm start` would.
 */
import { createServer, type Server } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { BenchCluster, buildBundle, startNode } from './lib/cluster.js';
import { Client } from './lib/http.js';
import { payload, publishBody, stampOf } from './lib/load.js';
import { cpuSecondsOf, serverVersion } from './lib/server.js';
import { fmtMs, fmtNum, Samples, table } from './lib/stats.js';

const { values: flags } = parseArgs({
  options: {
    phases: { type: 'string', default: 'a,b,c,d' },
    messages: { type: 'string', default: '100000' },
    'max-in-flight': { type: 'string', default: '256' },
    subs: { type: 'string', default: '100' },
    'messages-per-sub': { type: 'string', default: '2000' },
    credits: { type: 'string', default: '5000' },
    'ack-batch': { type: 'string', default: '500' },
    sockets: { type: 'string', default: '1' },
    /** How the WebSocket client reads frames: json (parse each) or ackId (cut the ackId out). */
    'client-parse': { type: 'string', default: 'json' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    size: { type: 'string', default: '1024' },
    /** Print the slowest publish→receive samples of (d) with their time into the run. */
    'show-slow': { type: 'boolean', default: false },
  },
});
const phases = new Set(flags.phases!.split(','));
const size = Number(flags.size);
const limitMs = 120_000; // every phase stops here at the latest

/** A receiver that answers 204 and counts; `onBody` sees each request body. */
async function receiver(onBody?: (body: Buffer) => void): Promise<{ url: string; count: () => number; close(): Promise<void> }> {
  let n = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      n++;
      if (onBody) onBody(Buffer.concat(chunks));
      res.writeHead(204).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`,
    count: () => n,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function prefill(client: Client, topic: string, total: number): Promise<void> {
  const body = publishBody(500, size, false);
  let sent = 0;
  const workers = Array.from({ length: 8 }, async () => {
    while (sent < total) {
      sent += 500;
      await client.ok('POST', `/v1/topics/${topic}/messages`, body);
    }
  });
  await Promise.all(workers);
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

const rows: string[][] = [];
const notes: string[] = [];

async function webhookPhase(label: string, subs: number, perSub: number, maxInFlight: number): Promise<void> {
  const node = await startNode(['--allow-private-webhooks']);
  const client = new Client(node.url, 16);
  const rx = await receiver();
  try {
    await client.ok('PUT', '/v1/topics/t', {});
    await prefill(client, 't', perSub);
    const cpu0 = cpuSecondsOf(node.pid);
    const own0 = process.cpuUsage();
    const t0 = performance.now();
    const names = Array.from({ length: subs }, (_, i) => `s${i}`);
    await Promise.all(
      names.map((s) => client.ok('PUT', `/v1/subscriptions/${s}`, { topic: 't', startAt: 'earliest', push: { url: rx.url, maxInFlight } })),
    );
    const total = subs * perSub;
    const done = await waitFor(async () => {
      if (rx.count() < total) return false;
      const st = await Promise.all(names.map((s) => client.ok('GET', `/v1/subscriptions/${s}`)));
      return st.every((x: any) => x.backlog === 0);
    }, limitMs);
    const sec = (performance.now() - t0) / 1000;
    const cpu = (cpuSecondsOf(node.pid) - cpu0) / sec;
    const own = process.cpuUsage(own0);
    const benchCpu = (own.user + own.system) / 1e6 / sec;
    rows.push([label, fmtNum(total), fmtNum(rx.count() / sec), '', '', '', `${fmtNum(cpu * 100)}%`, `${fmtNum(benchCpu * 100)}%`, done ? '' : 'NOT DRAINED']);
    console.log(`${label}: ${fmtNum(rx.count())} deliveries in ${sec.toFixed(2)} s → ${fmtNum(rx.count() / sec)}/s`);
  } finally {
    await rx.close();
    await client.close();
    await node.stop();
  }
}

/**
 * One consumer socket: keeps `credits` out, acks every `ackBatch` messages and tops the credits up.
 * `parse: 'json'` parses every frame as a client would; `'ackId'` only cuts the ackId out of the frame
 * text (the client shares the machine's two cores with the server, so a lean client shows more of
 * what the server can do). Resolves after `quota` messages.
 */
function consumeSocket(url: string, quota: number, credits: number, ackBatch: number, parse: 'json' | 'ackId'): Promise<void> {
  const ws = new WebSocket(url);
  let received = 0;
  let pending: string[] = [];
  let outstanding = 0;
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('websocket phase timed out')), limitMs);
    ws.on('open', () => {
      outstanding = credits;
      ws.send(JSON.stringify({ type: 'credit', n: credits }));
    });
    ws.on('message', (raw) => {
      const text = raw.toString();
      let ackId: string;
      if (parse === 'json') {
        const f = JSON.parse(text);
        if (f.type !== 'message') return;
        ackId = f.ackId;
      } else {
        if (!text.startsWith('{"type":"message"')) return;
        const at = text.lastIndexOf('"ackId":"');
        ackId = text.slice(at + 9, text.indexOf('"', at + 9));
      }
      received++;
      outstanding--;
      pending.push(ackId);
      if (pending.length >= ackBatch || received === quota) {
        const ids = pending;
        pending = [];
        ws.send(JSON.stringify({ type: 'ack', ackIds: ids }));
        const more = Math.min(credits - outstanding, quota - received - outstanding);
        if (more > 0) {
          outstanding += more;
          ws.send(JSON.stringify({ type: 'credit', n: more }));
        }
      }
      if (received === quota) {
        clearTimeout(timer);
        ws.close();
        resolve();
      }
    });
    ws.on('error', reject);
  });
}

async function websocketPhase(total: number, credits: number, ackBatch: number, sockets: number, parse: 'json' | 'ackId'): Promise<void> {
  const node = await startNode();
  const client = new Client(node.url, 16);
  try {
    await client.ok('PUT', '/v1/topics/t', {});
    await client.ok('PUT', '/v1/subscriptions/s', { topic: 't', startAt: 'earliest' });
    await prefill(client, 't', total);
    const cpu0 = cpuSecondsOf(node.pid);
    const own0 = process.cpuUsage();
    const t0 = performance.now();
    const url = `${node.url.replace('http', 'ws')}/v1/subscriptions/s/ws`;
    await Promise.all(Array.from({ length: sockets }, () => consumeSocket(url, total / sockets, credits, ackBatch, parse)));
    // Acks are committed once the backlog is 0.
    await waitFor(async () => (await client.ok('GET', '/v1/subscriptions/s')).backlog === 0, 30_000);
    const sec = (performance.now() - t0) / 1000;
    const cpu = (cpuSecondsOf(node.pid) - cpu0) / sec;
    const own = process.cpuUsage(own0);
    const label = `(c) WebSocket, ${sockets} socket${sockets > 1 ? 's' : ''}, ${credits} credits, acks per ${ackBatch}, client ${parse === 'json' ? 'parses JSON' : 'reads the ackId'}`;
    rows.push([label, fmtNum(total), fmtNum(total / sec), '', '', '', `${fmtNum(cpu * 100)}%`, `${fmtNum(((own.user + own.system) / 1e6 / sec) * 100)}%`, '']);
    console.log(`${label}: ${fmtNum(total)} in ${sec.toFixed(2)} s → ${fmtNum(total / sec)}/s`);
  } finally {
    await client.close();
    await node.stop();
  }
}

async function latencyPhase(rate: number, seconds: number): Promise<void> {
  const samples = new Samples();
  const slow: [number, number][] = [];
  let started = Infinity;
  const rx = await receiver((body) => {
    const t = stampOf(JSON.parse(body.toString()).data as string);
    if (t === undefined) return;
    const ms = performance.now() - t;
    // The first second warms up (JIT, connections) and is not counted.
    if (t < started + 1000) return;
    samples.add(ms);
    if (ms > 20) slow.push([Math.round(t - started), Math.round(ms)]);
  });
  const cluster = await BenchCluster.start(3, ['--allow-private-webhooks']);
  try {
    const leaderId = await cluster.waitLeader();
    const client = new Client(cluster.member(leaderId).url, 16);
    await client.ok('PUT', '/v1/topics/t', {});
    await client.ok('PUT', '/v1/subscriptions/s', { topic: 't', push: { url: rx.url } });
    const batch = 10;
    const intervalMs = (1000 * batch) / rate;
    const t0 = performance.now();
    started = t0;
    let sent = 0;
    const inflight: Promise<unknown>[] = [];
    while (performance.now() - t0 < seconds * 1000) {
      const due = t0 + (sent / batch) * intervalMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inflight.push(client.ok('POST', '/v1/topics/t/messages', publishBody(batch, size, true)));
      sent += batch;
    }
    await Promise.all(inflight);
    await waitFor(async () => rx.count() >= sent, 30_000);
    const [p50, p99] = samples.percentiles(50, 99);
    rows.push([`(d) 3 nodes, ${fmtNum(rate)} msg/s published, push to 1 receiver`, fmtNum(sent), fmtNum(rate), fmtMs(p50!), fmtMs(p99!), fmtMs(samples.max()), '', '', '']);
    console.log(`(d) latency: p50 ${fmtMs(p50!)} ms, p99 ${fmtMs(p99!)} ms over ${samples.count}`);
    if (flags['show-slow']) {
      const perSecond = new Map<number, number>();
      for (const [at] of slow) perSecond.set(Math.floor(at / 1000), (perSecond.get(Math.floor(at / 1000)) ?? 0) + 1);
      console.log(`(d) samples over 20 ms per second of the run: ${JSON.stringify([...perSecond])}; worst: ${JSON.stringify(slow.sort((a, b) => b[1] - a[1]).slice(0, 10))}`);
    }
    await client.close();
  } finally {
    await cluster.stop();
    await rx.close();
  }
}

async function main(): Promise<void> {
  buildBundle();
  const started = new Date().toISOString();
  const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
  const maxInFlight = Number(flags['max-in-flight']);
  if (phases.has('a')) await webhookPhase(`(a) webhooks, 1 subscription, maxInFlight ${maxInFlight}`, 1, Number(flags.messages), maxInFlight);
  if (phases.has('b')) await webhookPhase(`(b) webhooks, ${flags.subs} subscriptions, maxInFlight 64 each`, Number(flags.subs), Number(flags['messages-per-sub']), 64);
  if (phases.has('c')) {
    const parse = flags['client-parse'] === 'ackId' ? 'ackId' : 'json';
    await websocketPhase(Number(flags.messages), Number(flags.credits), Number(flags['ack-batch']), Number(flags.sockets), parse);
  }
  if (phases.has('d')) await latencyPhase(Number(flags.rate), Number(flags.seconds));
  console.log(`\n## Herald push — ${started}\n`);
  console.log(`${cpus().length} cores, node ${process.version}, ${size}-byte messages; server ${serverVersion()}; load average at start ${load0}\n`);
  console.log(table(['scenario', 'messages', 'msg/s', 'p50 ms', 'p99 ms', 'max ms', 'server CPU', 'bench CPU', 'note'], rows));
  for (const n of notes) console.log(n);
  void payload;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
