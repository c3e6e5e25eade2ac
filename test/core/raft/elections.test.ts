// Goal: when a leader dies and the survivors' election timers fire at the same moment, one election
// round elects a new leader: the two pre-candidates do not both campaign and split the vote (which
// cost a whole second election timeout, 1–2 s, and a failover over the 3 s users are promised). And
// when one survivor's pre-vote reached the other still inside its leader lease (ignored), the other's
// campaign still ends the wait at once.
// Method: three RaftCores driven by hand (persist, send, advance), every message delivered in rounds,
// timers made equal (random() = 0) and ticked in lockstep, so the timing is exactly the bad one.
import { describe, expect, test } from 'vitest';
import type { Message } from '../../../src/core/raft/messages.js';
import { RaftCore } from '../../../src/core/raft/raft-core.js';
import { MemoryLogStorage } from '../../sim/memory-log-storage.js';

const electionTicks = 10;

class Group {
  readonly cores = new Map<number, RaftCore>();
  readonly storages = new Map<number, MemoryLogStorage>();
  readonly dead = new Set<number>();
  private inbox: Message[] = [];

  constructor(ids: number[]) {
    const conf = { voters: ids, learners: [] };
    for (const id of ids) {
      const storage = MemoryLogStorage.bootstrap(conf, null);
      this.storages.set(id, storage);
      this.cores.set(
        id,
        new RaftCore({
          id,
          group: 0,
          storage,
          hardState: storage.hardState(),
          conf,
          applied: 1,
          electionTicks,
          heartbeatTicks: 1,
          random: () => 0,
          inflightMax: 16,
          appendBytesMax: 1 << 20,
          applyBytesMax: 1 << 20,
        }),
      );
    }
  }

  core(id: number): RaftCore {
    return this.cores.get(id)!;
  }

  /** Persist, then send (queue), then advance: the driver's loop, for every live node. */
  drive(): void {
    for (const [id, core] of this.cores) {
      if (this.dead.has(id)) continue;
      while (core.hasReady()) {
        const rd = core.ready();
        const storage = this.storages.get(id)!;
        if (rd.entries.length > 0) storage.append(rd.entries);
        if (rd.hardState) storage.setHardState(rd.hardState);
        this.inbox.push(...(rd.messages ?? []));
        core.advance(rd);
      }
    }
  }

  /** Delivers every message, and what they cause, until the network is quiet. */
  settle(roundsMax = 50): void {
    this.drive();
    for (let round = 0; this.inbox.length > 0; round++) {
      expect(round).toBeLessThan(roundsMax);
      const batch = this.inbox;
      this.inbox = [];
      for (const m of batch) if (!this.dead.has(m.from) && !this.dead.has(m.to)) this.core(m.to).step(m);
      this.drive();
    }
  }

  tick(ids: number[], times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const id of ids) this.core(id).tick();
      this.drive();
    }
  }

  leaders(): number[] {
    return [...this.cores].filter(([id, c]) => !this.dead.has(id) && c.role === 'leader').map(([id]) => id);
  }
}

/** A group of three with node 3 leading, every member caught up. */
function groupLedBy3(): Group {
  const g = new Group([1, 2, 3]);
  g.core(3).campaign(false);
  g.settle();
  expect(g.leaders()).toEqual([3]);
  g.tick([1, 2, 3]); // a heartbeat round: the followers' timers restart together
  g.settle();
  return g;
}

describe('elections after the leader dies', () => {
  test('survivors whose timers fire together elect one leader in one round, not a split vote', () => {
    const g = groupLedBy3();
    const term = g.core(3).term;
    g.dead.add(3);
    // Tick both survivors in lockstep until their (equal) timers fire in the same tick.
    for (let i = 0; i < 3 * electionTicks && g.core(1).role === 'follower'; i++) g.tick([1, 2]);
    expect([g.core(1).role, g.core(2).role]).toEqual(['pre-candidate', 'pre-candidate']);
    g.settle(); // no tick: only the messages of this one round
    expect(g.leaders()).toHaveLength(1);
    const leader = g.core(g.leaders()[0]!);
    expect(leader.term).toBe(term + 1);
    // The other survivor follows it, in the same term.
    const other = g.core(g.leaders()[0] === 1 ? 2 : 1);
    expect([other.role, other.term, other.leader]).toEqual(['follower', term + 1, leader.id]);
  });

  test('a pre-vote ignored inside the leader lease does not hold the election up once the other survivor campaigns', () => {
    const g = groupLedBy3();
    const term = g.core(3).term;
    g.dead.add(3);
    // Node 1's timer fires one tick before node 2's lease ends: node 2 ignores its pre-vote.
    g.tick([1, 2], electionTicks - 1);
    g.tick([1]);
    expect(g.core(1).role).toBe('pre-candidate');
    g.settle();
    expect([g.core(1).role, g.core(2).role]).toEqual(['pre-candidate', 'follower']);
    // One tick later node 2's timer fires too; the messages of that round alone elect a leader.
    g.tick([2]);
    expect(g.core(2).role).toBe('pre-candidate');
    g.settle();
    expect(g.leaders()).toHaveLength(1);
    expect(g.core(g.leaders()[0]!).term).toBe(term + 1);
  });

  test('a rival whose log is ahead wins the tie, whatever the ids', () => {
    const g = groupLedBy3();
    // Node 2 (the higher id of the survivors) holds an entry node 1 never got.
    g.dead.add(1);
    expect(g.core(3).propose(new Uint8Array([1])).ok).toBe(true);
    g.settle();
    g.dead.delete(1);
    g.dead.add(3);
    g.tick([1, 2], electionTicks);
    expect([g.core(1).role, g.core(2).role]).toEqual(['pre-candidate', 'pre-candidate']);
    g.settle();
    expect(g.leaders()).toEqual([2]);
  });
});
