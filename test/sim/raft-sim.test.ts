/**
 * Goal: the Raft core keeps its safety properties (one leader per term, log matching, state-machine
 * safety, leader completeness, commit never goes back, linearizable ReadIndex) under drops, delays,
 * duplicates, reordering, partitions, crashes (including between persisting and sending), log
 * compaction with snapshot installs, membership changes and leader transfers; and, once the faults
 * stop, it recovers: a leader, every member caught up, every acknowledged command applied everywhere.
 * The nodes run the real broker state machine under broker clients (broker-workload.ts): replies are
 * the same on every node, every acknowledged publish is consumed or dead-lettered after a drain, an
 * ok ack is final, delivery attempts are exact, leases, delays, ordering keys and dedup windows hold,
 * and every member ends with the same broker state.
 * Method: deterministic whole-cluster simulation (test/sim/cluster.ts), SIM_SEEDS seeds in total
 * (default 500) split between 3- and 5-node groups; SIM_FROM moves the first seed (nightly random
 * sets). A failure names the seed and the command that replays it with a trace.
 */
import { describe, expect, it } from 'vitest';
import { replayCommand, runSeed, type RunResult } from './simulation.js';

const total = Number(process.env.SIM_SEEDS ?? 500);
const from = Number(process.env.SIM_FROM ?? 1);

function explain(failures: RunResult[]): string {
  const shown = failures.slice(0, 10).map(
    (r) => `seed ${r.seed}, ${r.nodes} nodes, tick ${r.tick} (${r.phase}): ${r.error}\n    replay: ${replayCommand(r.seed, r.nodes)} --verbose`,
  );
  const more = failures.length > shown.length ? `\n  … and ${failures.length - shown.length} more` : '';
  return `${failures.length} simulation run(s) failed:\n  ${shown.join('\n  ')}${more}`;
}

describe('Raft cluster simulation', () => {
  for (const nodes of [3, 5]) {
    const count = nodes === 3 ? Math.ceil(total / 2) : Math.floor(total / 2);
    it(`${count} seeds, ${nodes} nodes`, { timeout: 120_000 }, () => {
      const failures: RunResult[] = [];
      for (let seed = from; seed < from + count; seed++) {
        const r = runSeed({ seed, nodes });
        if (!r.ok) failures.push(r);
      }
      expect(failures.length, explain(failures)).toBe(0);
    });
  }
});
