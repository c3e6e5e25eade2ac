/**
 * Goal: the Raft core's named behaviours, each in one scripted story on the simulated cluster: a leader
 * cut off and healed steps down without split brain and loses only its uncommitted tail; pre-vote and
 * the leader lease keep a cut-off follower from raising the term or deposing the leader; leader
 * transfer; a learner added, caught up by snapshot and promoted; removing a follower and the leader;
 * ReadIndex confirmed only by a quorum; and recovery paths (a full append pipeline to a follower that
 * lost every append, a lost snapshot acknowledgement).
 * Method: a Cluster (test/sim/cluster.ts) on a quiet network, driven tick by tick; the simulator's
 * checkers run throughout, and each story ends converged with every acknowledged command applied.
 */
import { describe, expect, it } from 'vitest';
import { Cluster, type ClusterOptions, type SimNode } from './cluster.js';

function cluster(nodes: number, extra: Partial<ClusterOptions> = {}): Cluster {
  const c = new Cluster({ seed: 7, nodes, ...extra });
  settle(c);
  return c;
}

function waitFor(c: Cluster, cond: () => boolean, ticksMax: number, what: string): void {
  for (let i = 0; i < ticksMax; i++) {
    if (cond()) return;
    c.tick();
  }
  if (!cond()) throw new Error(`not ${what} after ${ticksMax} ticks\n${c.describe()}`);
}

/** One leader, every member caught up. */
function settle(c: Cluster, ticksMax = 200): SimNode {
  waitFor(c, () => c.notConverged() === undefined, ticksMax, `converged (${c.notConverged()})`);
  return c.leader()!;
}

/** Proposes `count` commands to `leader` and waits until all are acknowledged. */
function write(c: Cluster, leader: SimNode, count: number): string[] {
  const cmds: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = c.propose(leader);
    expect(r?.result.ok).toBe(true);
    cmds.push(r!.cmd);
  }
  waitFor(c, () => cmds.every((cmd) => c.acked.has(cmd)), 50, `acknowledged ${cmds.join(',')}`);
  return cmds;
}

const ids = (c: Cluster) => [...c.nodes.keys()];
const followers = (c: Cluster, leader: SimNode) => c.liveNodes().filter((n) => n.id !== leader.id);
const appliedEverywhere = (c: Cluster, cmd: string) => c.liveNodes().every((n) => n.commands.some((x) => x.cmd === cmd));
const appliedAnywhere = (c: Cluster, cmd: string) => c.liveNodes().some((n) => n.commands.some((x) => x.cmd === cmd));

describe('leader isolated, then healed', () => {
  it('steps down, a new leader takes over, and its uncommitted entries are replaced', () => {
    const c = cluster(3);
    const old = c.leader()!;
    const oldTerm = old.core!.term;
    write(c, old, 3);
    c.net.isolate(old.id, ids(c));
    const lost = c.propose(old)!;
    expect(lost.result.ok).toBe(true);
    if (!lost.result.ok) return;
    waitFor(c, () => c.leaders().some((l) => l.id !== old.id), 100, 'a new leader on the majority side');
    const next = c.leaders().find((l) => l.id !== old.id)!;
    expect(next.core!.term).toBeGreaterThan(oldTerm);
    // Check-quorum: the cut-off leader steps down by itself, before any heal.
    waitFor(c, () => old.core!.role !== 'leader', 3 * 10, 'the old leader stepped down');
    const after = write(c, next, 3);
    c.net.heal();
    settle(c);
    expect(c.leader()).toBe(next);
    expect(old.core!.term).toBe(next.core!.term);
    expect(old.core!.leader).toBe(next.id);
    // The isolated leader's entry was never committed: nobody applies it, and its slot now holds the new term's entry.
    expect(appliedAnywhere(c, lost.cmd)).toBe(false);
    expect(old.core!.log.term(lost.result.index)).toBe(next.core!.term);
    for (const cmd of after) expect(appliedEverywhere(c, cmd)).toBe(true);
    c.checkConverged();
  });
});

describe('pre-vote and the leader lease', () => {
  it('a follower cut off for a long time does not raise its term, and rejoins without deposing the leader', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    const term = leader.core!.term;
    const f = followers(c, leader)[0]!;
    c.net.isolate(f.id, ids(c));
    write(c, leader, 5);
    c.ticks(200);
    expect(f.core!.term).toBe(term);
    c.net.heal();
    c.ticks(30);
    expect(c.leader()).toBe(leader);
    expect(leader.core!.term).toBe(term);
    settle(c);
    c.checkConverged();
  });

  it('a follower that stops hearing the leader (one-way cut) cannot win a pre-vote while the others hear it', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    const term = leader.core!.term;
    const f = followers(c, leader)[0]!;
    c.net.cut(leader.id, f.id);
    c.ticks(100);
    expect(c.leader()).toBe(leader);
    expect(leader.core!.term).toBe(term);
    expect(f.core!.term).toBe(term);
    c.net.heal();
    settle(c);
    expect(c.leader()).toBe(leader);
  });
});

describe('leader transfer', () => {
  it('hands leadership to a caught-up follower in the next term and refuses proposals meanwhile', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    const term = leader.core!.term;
    write(c, leader, 3);
    const target = followers(c, leader)[0]!;
    expect(c.transfer(target.id, leader)).toBe(true);
    expect(c.propose(leader)!.result).toMatchObject({ ok: false, reason: 'transferring' });
    waitFor(c, () => c.leader() === target, 5, `n${target.id} leads`);
    expect(target.core!.term).toBe(term + 1);
    expect(c.leaders()).toHaveLength(1);
    write(c, target, 3);
    settle(c);
    c.checkConverged();
  });

  it('catches a lagging target up first', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    const target = followers(c, leader)[0]!;
    c.crash(target.id, -1);
    write(c, leader, 20);
    c.restart(target.id);
    expect(c.transfer(target.id, leader)).toBe(true);
    waitFor(c, () => c.leader() === target, 10, `n${target.id} leads`);
    expect(target.applied).toBeGreaterThanOrEqual(leader.applied);
    settle(c);
    c.checkConverged();
  });
});

describe('membership', () => {
  it('adds a learner, catches it up by snapshot, promotes it, and it can lead', () => {
    const c = cluster(3, { compactEvery: 5 });
    const leader = c.leader()!;
    write(c, leader, 30);
    expect(leader.storage.snapshot().index).toBeGreaterThan(1);
    const n = c.addNode();
    expect(c.proposeConfChange({ type: 'add-learner', node: n.id }, leader)).toMatchObject({ ok: true });
    // One conf change at a time.
    expect(c.proposeConfChange({ type: 'remove', node: followers(c, leader)[0]!.id }, leader)).toMatchObject({ ok: false, reason: 'conf-change-pending' });
    settle(c);
    expect(leader.conf).toEqual({ voters: [1, 2, 3], learners: [n.id] });
    expect(n.storage.snapshot().index).toBeGreaterThan(1); // installed a snapshot, did not replay from the start
    expect(n.core!.role).toBe('follower');
    // A learner never campaigns, even when it hears from nobody.
    c.net.isolate(n.id, ids(c));
    c.ticks(50);
    expect(n.core!.role).toBe('follower');
    c.net.heal();
    settle(c);
    expect(c.proposeConfChange({ type: 'promote', node: n.id }, leader)).toMatchObject({ ok: true });
    settle(c);
    for (const m of c.liveNodes()) expect(m.conf).toEqual({ voters: [1, 2, 3, n.id], learners: [] });
    // Four voters: quorum three. With one old follower down, the new voter is needed to commit.
    const [f1, f2] = followers(c, leader).filter((x) => x.id !== n.id);
    c.crash(f1!.id, -1);
    write(c, leader, 3);
    c.crash(f2!.id, -1);
    const stuck = c.propose(leader)!;
    c.ticks(5);
    expect(c.acked.has(stuck.cmd)).toBe(false);
    c.restart(f1!.id);
    c.restart(f2!.id);
    waitFor(c, () => c.acked.has(stuck.cmd), 50, 'the blocked write committed');
    expect(c.transfer(n.id, c.leader())).toBe(true);
    waitFor(c, () => c.leader() === n, 10, `n${n.id} leads`);
    write(c, n, 3);
    settle(c);
    c.checkConverged();
  });

  it('removes a follower, then the leader itself', () => {
    const c = cluster(5);
    let leader = c.leader()!;
    write(c, leader, 3);
    const victim = followers(c, leader)[0]!;
    expect(c.proposeConfChange({ type: 'remove', node: victim.id }, leader)).toMatchObject({ ok: true });
    settle(c);
    expect(victim.decommissioned).toBe(true);
    expect(leader.conf.voters).not.toContain(victim.id);
    write(c, leader, 3);
    const old = leader;
    expect(c.proposeConfChange({ type: 'remove', node: old.id }, old)).toMatchObject({ ok: true });
    waitFor(c, () => c.leader() !== undefined && c.leader() !== old, 60, 'a new leader after the leader removed itself');
    leader = c.leader()!;
    expect(leader.conf.voters).toHaveLength(3);
    expect(leader.conf.voters).not.toContain(old.id);
    write(c, leader, 3);
    // Three voters left: one more may fail.
    const down = followers(c, leader)[0]!;
    c.crash(down.id, -1);
    write(c, leader, 3);
    c.restart(down.id);
    settle(c);
    c.checkConverged();
  });
});

describe('ReadIndex', () => {
  it('a healthy leader confirms a read at its commit index within a round trip', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    write(c, leader, 3);
    const ctx = c.readIndex(leader);
    expect(ctx).toBeDefined();
    c.tick();
    expect(c.pendingRead(leader, ctx!)).toBe(false);
    expect(c.stats.readsConfirmed).toBe(1);
  });

  it('a leader that reaches only a minority confirms no read', () => {
    const c = cluster(5);
    const leader = c.leader()!;
    write(c, leader, 3);
    const [f1, ...rest] = followers(c, leader);
    c.net.partition([leader.id, f1!.id], rest.map((n) => n.id));
    const ctx = c.readIndex(leader);
    expect(ctx).toBeDefined();
    for (let i = 0; i < 30 && leader.core!.role === 'leader'; i++) {
      c.tick();
      expect(c.pendingRead(leader, ctx!)).toBe(true);
    }
    expect(c.stats.readsConfirmed).toBe(0);
  });

  it('an isolated leader confirms no read', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    c.net.isolate(leader.id, ids(c));
    const ctx = c.readIndex(leader);
    expect(ctx).toBeDefined();
    c.ticks(30);
    expect(c.stats.readsConfirmed).toBe(0);
  });

  it('a read whose heartbeats were lost is confirmed by later heartbeats once the network heals', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    write(c, leader, 1);
    for (const f of followers(c, leader)) c.net.cut(leader.id, f.id);
    const ctx = c.readIndex(leader);
    expect(ctx).toBeDefined();
    c.tick(); // the read's heartbeats are lost
    expect(c.pendingRead(leader, ctx!)).toBe(true);
    c.net.heal();
    c.ticks(3);
    expect(leader.core!.role).toBe('leader');
    expect(c.pendingRead(leader, ctx!)).toBe(false);
  });
});

describe('replication recovers from lost messages', () => {
  it('a follower that lost a full pipeline of appends is caught up after the heal', () => {
    const c = cluster(3);
    const leader = c.leader()!;
    const f = followers(c, leader)[0]!;
    c.net.cut(leader.id, f.id);
    for (let i = 0; i < 70; i++) {
      c.propose(leader);
      c.tick();
    }
    c.net.heal();
    waitFor(c, () => f.applied === leader.applied, 100, `n${f.id} caught up (the leader's pipeline to it was full)`);
    settle(c);
    c.checkConverged();
  });

  it('a follower whose snapshot acknowledgement was lost is caught up after the heal', () => {
    const c = cluster(3, { compactEvery: 5 });
    const leader = c.leader()!;
    const f = followers(c, leader)[0]!;
    c.crash(f.id, -1);
    write(c, leader, 20);
    // Lose every acknowledgement from f (its rejections still reach the leader, so it sends a snapshot).
    c.net.dropFilter = (m) => m.type === 'append-response' && m.from === f.id && !m.reject;
    c.restart(f.id);
    waitFor(c, () => f.storage.snapshot().index > 1, 20, `n${f.id} installed a snapshot`);
    c.ticks(5);
    c.net.dropFilter = undefined;
    write(c, leader, 1);
    waitFor(c, () => f.applied === leader.applied, 100, `n${f.id} caught up (its snapshot ack was lost)`);
    settle(c);
    c.checkConverged();
  });
});
