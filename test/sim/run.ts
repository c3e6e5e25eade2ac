/**
 * The simulator's command line.
 *
 *   tsx test/sim/run.ts --seeds N [--nodes 3|5] [--from S] [--stats]   run seeds S..S+N-1 (default: both sizes)
 *   tsx test/sim/run.ts --seed S [--nodes 3|5] [--verbose]   replay one seed; --verbose prints its trace
 *   exploration knobs (the defaults are production's): --append-bytes-max B --inflight-max N
 *     --heartbeat-ticks H --chaos-ticks T
 *
 * (`npm run sim -- …` runs this file.) A run is a pure function of (seed, nodes), so a failure printed
 * here or by test/sim/raft-sim.test.ts replays exactly.
 */
import type { CoreKnobs } from './cluster.js';
import { replayCommand, runSeed, type RunResult } from './simulation.js';

function parse(argv: string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      args.set(a.slice(2), next);
      i++;
    } else {
      args.set(a.slice(2), 'true');
    }
  }
  return args;
}

function int(args: Map<string, string>, name: string): number | undefined {
  const v = args.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`--${name} wants an integer, got ${v}`);
  return n;
}

function report(r: RunResult): string {
  const s = r.stats;
  const head = `seed ${r.seed} nodes ${r.nodes}: ${r.ok ? 'ok' : 'FAIL'} at tick ${r.tick} (${r.phase}); acked ${r.acked}, elections ${s.elections}, crashes ${s.crashes}, snapshots ${s.snapshotsSent}/${s.snapshotsInstalled}, conf changes ${s.confChanges}, deliveries ${s.deliveries}; broker: stored ${s.stored}, delivered ${s.delivered}, consumer acks ${s.consumerAcks}, dead-lettered ${s.deadLettered}, redriven ${s.redriven}`;
  if (r.ok) return head;
  return `${head}\n  ${r.error}\n${r.stack ? `${r.stack}\n` : ''}${r.state.replace(/^/gm, '  ')}\n  replay: ${replayCommand(r.seed, r.nodes)} --verbose`;
}

function main(): void {
  const args = parse(process.argv.slice(2));
  // Exploration only: the default runs use the production core options.
  const knobs: Partial<CoreKnobs> = {};
  const appendBytesMax = int(args, 'append-bytes-max');
  if (appendBytesMax !== undefined) knobs.appendBytesMax = appendBytesMax;
  const inflightMax = int(args, 'inflight-max');
  if (inflightMax !== undefined) knobs.inflightMax = inflightMax;
  const heartbeatTicks = int(args, 'heartbeat-ticks');
  if (heartbeatTicks !== undefined) knobs.heartbeatTicks = heartbeatTicks;
  const chaosTicks = int(args, 'chaos-ticks');
  const profile = chaosTicks !== undefined ? { chaosTicks } : undefined;
  const nodes = int(args, 'nodes');
  const seed = int(args, 'seed');
  if (nodes !== undefined && nodes !== 3 && nodes !== 5) throw new Error('--nodes must be 3 or 5');
  if (seed !== undefined) {
    const verbose = args.has('verbose');
    const r = runSeed({ seed, nodes: nodes ?? 3, knobs, profile, log: verbose ? (line) => console.log(line) : undefined });
    console.log(report(r));
    process.exitCode = r.ok ? 0 : 1;
    return;
  }
  const count = int(args, 'seeds') ?? 100;
  const from = int(args, 'from') ?? 1;
  const sizes = nodes !== undefined ? [nodes] : [3, 5];
  let failed = 0;
  const started = performance.now();
  const totals: Record<string, number> = {};
  for (const k of sizes) {
    for (let s = from; s < from + count; s++) {
      const r = runSeed({ seed: s, nodes: k, knobs, profile });
      for (const [name, v] of Object.entries(r.stats)) totals[name] = (totals[name] ?? 0) + v;
      totals.acked = (totals.acked ?? 0) + r.acked;
      if (!r.ok) {
        failed++;
        console.log(report(r));
      }
    }
  }
  const total = count * sizes.length;
  if (args.has('stats')) console.log(Object.entries(totals).map(([k, v]) => `${k}=${v}`).join(' '));
  console.log(`${total - failed}/${total} runs passed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main();
