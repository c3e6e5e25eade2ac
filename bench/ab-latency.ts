/**
 * A paired latency comparison (`npx tsx bench/ab-latency.ts --b-env "HERALD_SOMETHING=1" [flags]`):
 * two 3-node Herald clusters, A and B, started once and differing only in the environment their nodes
 * get, measured in short alternating windows of the peers benchmark's (d) (publish→consume at a fixed
 * rate), A then B, B then A, and so on. The machine's speed drifts by tens of percent within minutes
 * here, more than the changes worth measuring; neighbouring windows see nearly the same machine, so
 * the per-pair differences show what separate runs of `bench:peers` minutes apart cannot. Only the
 * cluster being measured carries load; the other idles (heartbeats). Run it with no --b-env first
 * (A against A) to see how far apart identical clusters come out. On 2026-11-24, 5-second windows at
 * 1,000 msg/s: p50 within ±0.4 ms of each other, p99 within ±5 ms. In two runs with both clusters
 * started once, the one started second had the higher p99 in 11 of 12 pairs; a third run, in two
 * rounds, showed no such lean (4 of 8). The two rounds guard against it anyway. p99 wants many pairs.
 *
 * Flags (env BENCH_<NAME> works too, flags win):
 *   --a-env "K=V K2=V2"   environment for A's nodes (default none)
 *   --b-env "K=V ..."     environment for B's nodes (default none: A against A, to see the spread)
 *   --pairs N             pairs of windows in each of two rounds (default 8): the first round starts
 *                         A's cluster first, the second B's (start order seemed to move p99, see above)
 *   --seconds N           measured seconds per window (default 5), after 1 s of warm-up
 *   --rate N              msg/s published (default 1000)
 *   --durability sync|relaxed  (default sync)
 */
import { parseArgs } from 'node:util';
import { HeraldPeer } from './lib/peers/herald.js';
import { latencyAtRate, type ScenarioConfig } from './lib/peers/scenarios.js';
import { flagText, numberFlag } from './lib/flags.js';
import { serverVersion } from './lib/server.js';
import { fmtMs, table } from './lib/stats.js';

const { values: flags } = parseArgs({
  options: {
    'a-env': { type: 'string' },
    'b-env': { type: 'string' },
    pairs: { type: 'string' },
    seconds: { type: 'string' },
    rate: { type: 'string' },
    durability: { type: 'string' },
  },
  allowPositionals: false,
});

function envOf(text: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of (text ?? '').split(/\s+/).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`an environment setting is K=V, not ${pair}`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

const aEnv = envOf(flagText(flags, 'a-env'));
const bEnv = envOf(flagText(flags, 'b-env'));
const pairs = numberFlag(flags, 'pairs', 8, { positive: true });
const durability = flagText(flags, 'durability') ?? 'sync';
if (durability !== 'sync' && durability !== 'relaxed') throw new Error(`--durability is sync or relaxed, not ${durability}`);
const config: ScenarioConfig = {
  seconds: numberFlag(flags, 'seconds', 5, { positive: true }),
  warmup: 1,
  inflight: 1000,
  backlog: 0,
  drainSeconds: 30,
  rate: numberFlag(flags, 'rate', 1000, { positive: true }),
  settleSeconds: 1,
};

/** Starts a cluster whose nodes see `env` on top of this process's environment (spawnNode copies it at spawn). */
async function startWith(env: Record<string, string>, build: boolean): Promise<HeraldPeer> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await HeraldPeer.start(1024, durability as 'sync' | 'relaxed', 'pull', build);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const rows: string[][] = [];
const d50: number[] = [];
const d99: number[] = [];
let built = false;
let pair = 0;
// Round 1 starts A's cluster first, round 2 B's: two identical clusters measured this way differed
// in p99 by start order alone (the one started second was worse in 11 of 12 pairs), so each side
// is started first once.
for (const firstStarted of ['A', 'B'] as const) {
  const envs = firstStarted === 'A' ? [aEnv, bEnv] : [bEnv, aEnv];
  const first = await startWith(envs[0]!, !built);
  built = true;
  let second: HeraldPeer | undefined;
  try {
    second = await startWith(envs[1]!, false);
    const a = firstStarted === 'A' ? first : second;
    const b = firstStarted === 'A' ? second : first;
    // A window each that is not counted: the first after a start is slow (p99 13–24 ms, then 4–10).
    for (const peer of [first, second]) await latencyAtRate(peer, config);
    for (let i = 0; i < pairs; i++) {
      pair++;
      // Alternate which goes first, so that neither always follows the other's load.
      const order: ['A' | 'B', HeraldPeer][] = i % 2 === 0 ? [['A', a], ['B', b]] : [['B', b], ['A', a]];
      const got: Record<string, { p50: number; p99: number }> = {};
      for (const [name, peer] of order) {
        const f = await latencyAtRate(peer, config);
        got[name] = { p50: f.p50 ?? NaN, p99: f.p99 ?? NaN };
        console.log(`[ab] pair ${pair} (${firstStarted} started first) ${name}: p50 ${fmtMs(got[name]!.p50)} ms, p99 ${fmtMs(got[name]!.p99)} ms (${f.note ?? ''})`);
      }
      const [ga, gb] = [got.A!, got.B!];
      d50.push(gb.p50 - ga.p50);
      d99.push(gb.p99 - ga.p99);
      rows.push([String(pair), firstStarted, fmtMs(ga.p50), fmtMs(gb.p50), fmtMs(gb.p50 - ga.p50), fmtMs(ga.p99), fmtMs(gb.p99), fmtMs(gb.p99 - ga.p99)]);
    }
  } finally {
    await second?.stop();
    await first.stop();
  }
}

const lower = (ds: number[]) => ds.filter((d) => d < 0).length;
console.log(`\n## A/B latency (${durability}, ${config.rate} msg/s, 2 × ${pairs} pairs of ${config.seconds} s), ${new Date().toISOString()}\n`);
console.log(`server ${serverVersion()}; A env: ${JSON.stringify(aEnv)}; B env: ${JSON.stringify(bEnv)}\n`);
console.log(table(['pair', 'started first', 'A p50 ms', 'B p50 ms', 'B − A', 'A p99 ms', 'B p99 ms', 'B − A'], rows));
console.log(`\nmedian difference B − A: p50 ${fmtMs(median(d50))} ms (B lower in ${lower(d50)} of ${pair}), p99 ${fmtMs(median(d99))} ms (B lower in ${lower(d99)} of ${pair})`);
