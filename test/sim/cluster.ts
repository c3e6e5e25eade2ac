/**
 * A simulated Raft group on one thread: N RaftCores, each with a MemoryLogStorage and a driver loop
 * that mirrors the real one (Ready → persist → send → apply → advance), joined by a FakeNetwork, with
 * crashes, restarts and membership changes, and checkers that run after every step. Every choice is
 * drawn from one seeded PRNG, so a run replays exactly from its seed.
 *
 * Each node applies committed entries to the real broker state machine (BrokerMachine over its own
 * MemoryMessageStore). An entry holds a StampedCommand, msgpack-encoded (codec.ts), whose `nowMs`
 * the proposing node stamps from its clock (ticks × tickMs, plus a per-node skew); the proposer
 * applies its own command object, the others what they decode, as the real node does. A snapshot is
 * the broker's snapshot plus every retained message (what the real node streams), encoded on the wire;
 * a crash loses the machine, and a restart rebuilds it from the snapshot and replays the log.
 *
 * The checkers (a broken one throws SimViolation at once, with the tick):
 * - election safety: at most one leader per term, ever; a persisted vote never changes within a term;
 * - log matching, on persisted logs: an (index, term) names one entry, and fixes the term before it;
 * - state-machine safety: no two nodes apply different entries at one index; applies are contiguous;
 * - leader completeness: a new leader's log holds every entry any node has applied;
 * - a node's commit index never goes back; a committed entry is never overwritten on disk;
 * - ReadIndex: a confirmed read's index covers every write acknowledged before the read was asked;
 * - determinism: every node that applies an index computes the same broker reply and effects there;
 * - at the end (see `checkConverged`): every acknowledged command is applied by every member, and
 *   every member's broker has the same snapshot and the same messages.
 * The broker's own checkers (broker-workload.ts) follow the log through `onApplied`.
 */
import { AssertionError } from '../../src/core/assert.js';
import type { Command, StampedCommand } from '../../src/core/broker/commands.js';
import { BrokerMachine, type Reply } from '../../src/core/broker/machine.js';
import type { StoredMessage } from '../../src/core/broker/types.js';
import { MemoryMessageStore } from '../../src/storage/memory-store.js';
import type { BrokerSnapshot } from '../../src/core/broker/machine.js';

/** A snapshot with its messages in memory: the simulator's form (the real node streams them in chunks). */
export interface SnapshotPayload {
  state: BrokerSnapshot;
  messages: [number, StoredMessage[]][];
}
import { decode, digest, encode, stampedOf, type SimEnvelope } from './codec.js';
import type { Message } from '../../src/core/raft/messages.js';
import { RaftCore, decodeConfChange, type ConfChange, type ProposeResult } from '../../src/core/raft/raft-core.js';
import { EntryType, type ConfState, type Entry, type NodeId, type ReadState, type SnapshotMeta } from '../../src/core/raft/types.js';
import { MemoryLogStorage, cloneConf } from './memory-log-storage.js';
import { FakeNetwork, cloneMessage, quietNetwork, type NetworkOptions } from './network.js';
import { Prng } from './prng.js';

import { SimViolation, check } from './check.js';

export { SimViolation };

export interface CoreKnobs {
  electionTicks: number;
  heartbeatTicks: number;
  inflightMax: number;
  appendBytesMax: number;
  applyBytesMax: number;
}

export const defaultKnobs: CoreKnobs = {
  electionTicks: 10,
  heartbeatTicks: 1,
  inflightMax: 64,
  appendBytesMax: 1 << 20,
  applyBytesMax: 1 << 20,
};

export interface ClusterOptions {
  seed: number;
  nodes: number;
  network?: NetworkOptions;
  knobs?: Partial<CoreKnobs>;
  /** Compact a node's log once it has applied this many entries past its snapshot; 0: never. */
  compactEvery?: number;
  /** Entries kept behind the applied index when compacting. */
  compactKeep?: number;
  /** A node skips a tick with this probability (timer jitter). */
  tickSkipProbability?: number;
  /** Stop a removed node once its removal is applied somewhere (an operator would). */
  decommissionRemoved?: boolean;
  /**
   * A delivered message is left in the core without a Ready with this probability, so that several
   * messages are stepped between two Readies (the real driver steps whatever arrives while it awaits
   * its disk write).
   */
  stepBatchProbability?: number;
  /**
   * After stepping an append-response, apply what it committed at once, outside a Ready (as the real
   * node's receive() does with RaftCore.takeCommitted, where the core has it).
   */
  applyOnAppendResponse?: boolean;
  /**
   * A leader sends a proposal's appends before writing it with this probability (RaftCore.takeLeaderSends,
   * as the real driver does while a write is in progress), and then crashes before the write with
   * `earlySendCrashProbability`: the entry may survive on followers only.
   */
  earlySendProbability?: number;
  earlySendCrashProbability?: number;
  /** Each node's clock runs this many ms off the simulation's (drawn per node in ±max). */
  clockSkewMsMax?: number;
  log?: (line: string) => void;
}

/** Simulated milliseconds per tick: the leader stamps `now * tickMs` (plus its skew) into commands. */
export const tickMs = 100;

/** What a client proposes when it does not say: one retention step (a real, cheap broker command). */
const noopCommand: Command = { type: 'expire' };

/** Called once per log index, by the first node that applies it, with that node's state after it. */
export type AppliedListener = (n: SimNode, index: number, stamped: StampedCommand, reply: Reply) => void;

/** A client's callback: the proposing node applied its proposal at the index and term it was given. */
export type ReplyListener = (reply: Reply, at: { index: number; term: number; node: SimNode }) => void;

/** One applied command: the simulator's record of what a node applied (a ghost of the log). */
export interface AppliedCommand {
  index: number;
  term: number;
  cmd: string;
  /** The entry's content (see entryKey), for state-machine safety across snapshots. */
  key: string;
}

/**
 * A node's snapshot (immutable once made): the broker state and every retained message, as the real
 * node ships to a follower (SnapshotPayload), plus the checkers' record of the applied commands.
 */
interface MachineSnapshot {
  commands: readonly AppliedCommand[];
  broker: SnapshotPayload | null;
}

export class SimNode {
  core: RaftCore | null = null;
  incarnation = 0;
  /** Commands in the order applied. Lost on a crash, rebuilt from the snapshot. */
  commands: AppliedCommand[] = [];
  /** The broker state machine over its own message store. Lost on a crash, rebuilt from the snapshot
   * and the log. */
  store = new MemoryMessageStore();
  machine = new BrokerMachine(this.store);
  /** What this life proposed, by index: like the real node, it applies its own command object rather
   * than decoding the entry (only when the entry at that index is still its own, same term). */
  proposed = new Map<number, { term: number; stamped: StampedCommand }>();
  /** A snapshot taken at an applied index, to become the log's snapshot once `compactKeep` more
   * entries are applied (so the log keeps entries behind the applied index). */
  pendingSnap: { index: number; conf: ConfState; data: MachineSnapshot } | undefined;
  /** This node's clock offset. */
  skewMs = 0;
  applied = 0;
  conf: ConfState = { voters: [], learners: [] };
  /** The membership as of each applied index where it changed (for compaction behind `applied`). */
  confHistory: { index: number; conf: ConfState }[] = [];
  lastCommit = 0;
  /** Crash in the next ready, after persisting and before sending. */
  crashAfterPersist = false;
  restartAt = -1;
  decommissioned = false;
  readonly rng: Prng;

  constructor(
    readonly id: NodeId,
    readonly storage: MemoryLogStorage,
    rng: Prng,
  ) {
    this.rng = rng;
  }

  get alive(): boolean {
    return this.core !== null;
  }
}

function entryKey(e: Entry): string {
  return e.data.length === 0 ? `${e.type ?? 0}:` : `${e.type ?? 0}:${digest(e.data)}`;
}

/** The broker state and retained messages of a node (like LmdbStorage.snapshotPayload). */
export function snapshotPayload(n: SimNode): SnapshotPayload {
  const state = n.machine.snapshot();
  const messages: [number, StoredMessage[]][] = [];
  for (const t of state.topics) {
    const list: StoredMessage[] = [];
    for (let seq = t.firstSeq; seq <= t.lastSeq; seq++) {
      const m = n.store.get(t.id, seq);
      check(m !== undefined, `n${n.id}: topic ${t.name} lacks seq ${seq} for a snapshot`);
      list.push(m);
    }
    messages.push([t.id, list]);
  }
  return { state, messages };
}

export class Cluster {
  now = 0;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly net: FakeNetwork;
  readonly rng: Prng;
  private readonly knobs: CoreKnobs;
  private readonly opts: ClusterOptions;
  private nextNodeId: NodeId;
  private nextCmd = 1;
  /** The broker checkers' hook (see AppliedListener). */
  onApplied: AppliedListener | undefined;

  // ---- checker state ----
  readonly leadersByTerm = new Map<number, NodeId>();
  /** "index:term" → the entry's content, and the term of the entry before it (log matching). */
  private persistedKey = new Map<string, string>();
  private persistedPrevTerm = new Map<string, number>();
  /** Applied entries by index (state-machine safety). */
  private appliedTerm: number[] = [];
  private appliedKey: string[] = [];
  maxAppliedIndex = 0;
  /** Acknowledged commands: applied by the leader that proposed them, at the index and term it was given. */
  readonly acked = new Map<string, { index: number; term: number }>();
  maxAckedIndex = 0;
  private pending = new Map<string, { cmd: string; term: number; onReply: ReplyListener | undefined }>();
  /** Per index: a digest of the broker's reply and effects there (every node must compute the same). */
  private replyDigest: string[] = [];
  private replyNode: number[] = [];
  private reads = new Map<string, { minIndex: number }>();
  /** Messages the transport reports as failed go back to the sender, if it is still the same life. */
  private snapshotSender = new WeakMap<Message, number>();
  readonly stats = { proposals: 0, crashes: 0, restarts: 0, snapshotsSent: 0, snapshotsInstalled: 0, compactions: 0, confChanges: 0, confApplied: 0, elections: 0, transfers: 0, readsIssued: 0, readsConfirmed: 0, deliveries: 0 };

  constructor(opts: ClusterOptions) {
    this.opts = opts;
    this.rng = new Prng(opts.seed);
    this.knobs = { ...defaultKnobs, ...opts.knobs };
    this.net = new FakeNetwork(this.rng.fork(), opts.network ?? quietNetwork);
    const voters = Array.from({ length: opts.nodes }, (_, i) => i + 1);
    const empty: MachineSnapshot = { commands: [], broker: null };
    this.skewRng = new Prng((opts.seed ^ 0x2c1b3c6d) >>> 0);
    for (const id of voters) {
      const n = new SimNode(id, MemoryLogStorage.bootstrap({ voters, learners: [] }, empty), this.rng.fork());
      this.drawSkew(n);
      this.nodes.set(id, n);
      this.start(n);
    }
    this.nextNodeId = opts.nodes + 1;
  }

  private readonly skewRng: Prng;

  private drawSkew(n: SimNode): void {
    const max = this.opts.clockSkewMsMax ?? 0;
    n.skewMs = max > 0 ? this.skewRng.int(-max, max) : 0;
  }

  /** Node n's clock, as its leader stamps it into commands. */
  clockMs(n: SimNode): number {
    return this.now * tickMs + n.skewMs;
  }

  get logging(): boolean {
    return this.opts.log !== undefined;
  }

  log(line: string): void {
    this.opts.log?.(`[t=${this.now}] ${line}`);
  }

  // ---- node lives ----

  private start(n: SimNode): void {
    const snap = n.storage.snapshot();
    const data = n.storage.snapshotData() as MachineSnapshot | undefined;
    n.incarnation++;
    n.commands = data ? data.commands.slice() : [];
    this.loadMachine(n, data?.broker ?? null);
    n.proposed = new Map();
    n.pendingSnap = undefined;
    n.applied = snap.index;
    n.conf = cloneConf(snap.conf);
    n.confHistory = [{ index: snap.index, conf: cloneConf(snap.conf) }];
    n.crashAfterPersist = false;
    n.restartAt = -1;
    n.core = new RaftCore({
      id: n.id,
      group: 0,
      storage: n.storage,
      hardState: n.storage.hardState(),
      conf: cloneConf(snap.conf),
      applied: snap.index,
      electionTicks: this.knobs.electionTicks,
      heartbeatTicks: this.knobs.heartbeatTicks,
      random: () => n.rng.float(),
      inflightMax: this.knobs.inflightMax,
      appendBytesMax: this.knobs.appendBytesMax,
      applyBytesMax: this.knobs.applyBytesMax,
    });
    n.lastCommit = n.core.log.committed;
    const hs = n.storage.hardState();
    check(n.core.log.committed >= (hs?.commit ?? 0), `n${n.id} restarted with commit ${n.core.log.committed} below its persisted ${hs?.commit}`);
    this.log(`n${n.id} start #${n.incarnation} term=${n.core.term} commit=${n.core.log.committed} snap=${snap.index} last=${n.storage.lastIndex()} conf=${fmtConf(snap.conf)}`);
    this.drive(n);
  }

  /** A fresh machine and store holding a snapshot's state and messages (or nothing). */
  private loadMachine(n: SimNode, payload: SnapshotPayload | null): void {
    n.store = new MemoryMessageStore();
    n.machine = new BrokerMachine(n.store);
    if (!payload) return;
    for (const [topicId, list] of payload.messages) for (const m of list) n.store.put(topicId, m);
    n.machine.restore(payload.state);
  }

  /** Drops the node's core, its unsent messages and its in-memory state machine; its storage stays. */
  crash(id: NodeId, downTicks: number): void {
    const n = this.node(id);
    if (!n.core) return;
    n.core = null;
    n.restartAt = downTicks >= 0 ? this.now + downTicks : -1;
    this.stats.crashes++;
    this.dropPendingOf(n);
    this.log(`n${id} CRASH (restart at ${n.restartAt})`);
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    if (n.core || n.decommissioned) return;
    this.stats.restarts++;
    this.start(n);
  }

  private dropPendingOf(n: SimNode): void {
    const prefix = `${n.id}:`;
    for (const k of [...this.pending.keys()]) if (k.startsWith(prefix)) this.pending.delete(k);
    for (const k of [...this.reads.keys()]) if (k.startsWith(prefix)) this.reads.delete(k);
  }

  /** A new, empty node (to be added as a learner). It knows nobody until the leader reaches it. */
  addNode(): SimNode {
    const id = this.nextNodeId++;
    const n = new SimNode(id, new MemoryLogStorage(), this.rng.fork());
    this.drawSkew(n);
    this.nodes.set(id, n);
    this.start(n);
    return n;
  }

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  liveNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.core !== null);
  }

  /** Live nodes that believe they lead, highest term first. */
  leaders(): SimNode[] {
    return this.liveNodes()
      .filter((n) => n.core!.role === 'leader')
      .sort((a, b) => b.core!.term - a.core!.term);
  }

  leader(): SimNode | undefined {
    return this.leaders()[0];
  }

  /** Any node that believes it leads, stale ones included: clients cannot tell them apart. */
  someLeader(): SimNode | undefined {
    const ls = this.leaders();
    return ls.length === 0 ? undefined : this.rng.pick(ls);
  }

  // ---- time and messages ----

  /** One tick: restarts that are due, a tick for every live node, then every message due. */
  tick(): void {
    this.now++;
    for (const n of this.nodes.values()) {
      if (!n.core && !n.decommissioned && n.restartAt >= 0 && n.restartAt <= this.now) this.restart(n.id);
    }
    const order = this.rng.shuffle(this.liveNodes());
    for (const n of order) {
      if (!n.core) continue;
      if (this.rng.chance(this.opts.tickSkipProbability ?? 0)) continue;
      n.core.tick();
      this.drive(n);
    }
    this.deliverDue();
  }

  ticks(count: number): void {
    for (let i = 0; i < count; i++) this.tick();
  }

  deliverDue(): void {
    let deliveries = 0;
    const batch = this.opts.stepBatchProbability ?? 0;
    const undriven = new Set<SimNode>();
    for (;;) {
      const f = this.net.take(this.now);
      if (!f) {
        if (undriven.size === 0) return;
        const list = this.rng.shuffle([...undriven]);
        undriven.clear();
        for (const n of list) this.drive(n);
        continue;
      }
      check(++deliveries < 50_000, `message storm: more than 50000 deliveries in tick ${this.now}`);
      const m = f.msg;
      const dest = this.nodes.get(m.to);
      let fate = this.net.fate(m);
      if (fate === 'deliver' && !dest?.core) fate = 'down';
      if (fate !== 'deliver') {
        this.net.dropped++;
        if (this.opts.log) this.log(`  lost(${fate}) n${m.from}->n${m.to} ${fmtMsg(m)}`);
        if (m.type === 'snapshot') this.reportSnapshotFailed(m);
        continue;
      }
      this.net.delivered++;
      this.stats.deliveries++;
      if (this.opts.log) this.log(`  n${m.from}->n${m.to} ${fmtMsg(m)}`);
      dest!.core!.step(m);
      if (m.type === 'append-response' && this.opts.applyOnAppendResponse) this.applyEarly(dest!);
      if (batch > 0 && this.rng.chance(batch)) undriven.add(dest!);
      else this.drive(dest!);
    }
  }

  private applyEarly(n: SimNode): void {
    const core = n.core as (RaftCore & { takeCommitted?: () => Entry[] }) | null;
    if (!core || typeof core.takeCommitted !== 'function') return;
    for (const e of core.takeCommitted()) {
      this.applyEntry(n, e);
      if (!n.core) break;
    }
    while (this.driveDepth === 0 && this.replyQueue.length > 0) this.replyQueue.shift()!();
  }

  private reportSnapshotFailed(m: Message): void {
    const sender = this.nodes.get(m.from);
    if (sender?.core && this.snapshotSender.get(m) === sender.incarnation) {
      this.log(`n${m.from} snapshot to n${m.to} failed`);
      sender.core.reportSnapshotFailed(m.to);
      this.drive(sender);
    }
  }

  private send(n: SimNode, m: Message): void {
    let out = cloneMessage(m);
    if (out.type === 'snapshot') {
      const meta = n.storage.snapshot();
      check(meta.index === out.snapshot.index && meta.term === out.snapshot.term, `n${n.id} sends snapshot ${out.snapshot.index} but storage holds ${meta.index}`);
      check(out.data === undefined, 'the core filled snapshot data itself');
      // On the wire, as bytes: the receiver decodes its own copy (as over the real transport).
      out = { ...out, data: encode(n.storage.snapshotData()) };
      this.snapshotSender.set(out, n.incarnation);
      this.stats.snapshotsSent++;
    }
    check(out.from === n.id, `n${n.id} sends a message from n${out.from}`);
    check(out.to !== n.id, `n${n.id} sends a message to itself`);
    this.net.send(out, this.now);
  }

  // ---- the driver loop ----

  private driveDepth = 0;
  /** Clients' callbacks, run once no driver loop is on the stack (a callback may propose again). */
  private replyQueue: (() => void)[] = [];

  /** The real driver's loop: take a Ready, persist, (maybe crash), send, apply, advance; repeat. */
  drive(n: SimNode): void {
    this.driveDepth++;
    try {
      this.driveLoop(n);
    } finally {
      this.driveDepth--;
    }
    if (this.driveDepth === 0) {
      while (this.replyQueue.length > 0) this.replyQueue.shift()!();
    }
  }

  private driveLoop(n: SimNode): void {
    let rounds = 0;
    while (n.core && n.core.hasReady()) {
      check(++rounds < 10_000, `n${n.id}: ready never settles`);
      const core = n.core;
      const rd = core.ready();
      // 1. Persist: snapshot, entries, hard state (one atomic write in the real store).
      let snapData: MachineSnapshot | undefined;
      if (rd.snapshot) {
        check(rd.snapshot.data instanceof Uint8Array, `n${n.id} installs snapshot ${rd.snapshot.meta.index} without data`);
        snapData = decode<MachineSnapshot>(rd.snapshot.data);
        n.storage.installSnapshot(rd.snapshot.meta, snapData);
      }
      if (rd.entries.length > 0) {
        n.storage.append(rd.entries);
        this.checkPersisted(n, rd.entries);
      }
      if (rd.hardState) n.storage.setHardState(rd.hardState);
      if (n.crashAfterPersist) {
        this.log(`n${n.id} crashes after persisting, before sending ${rd.messages?.length ?? 0} messages`);
        this.crash(n.id, this.rng.int(1, 40));
        return;
      }
      // 2. Only then send.
      for (const m of rd.messages ?? []) this.send(n, m);
      // 3. Apply.
      if (rd.snapshot) this.installMachine(n, rd.snapshot.meta, snapData);
      for (const e of rd.committed) {
        this.applyEntry(n, e);
        if (!n.core) return; // decommissioned by applying its own removal: its reads went with it
      }
      for (const rs of rd.readStates ?? []) this.readConfirmed(n, rs);
      if (rd.softState) {
        this.log(`n${n.id} ${rd.softState.role} term=${core.term} leader=${rd.softState.leader}`);
        if (rd.softState.role === 'leader') this.stats.elections++;
      }
      if (!n.core) return; // decommissioned while applying its own removal
      // 4. Advance.
      core.advance(rd);
      this.checkNode(n, rd.softState?.role === 'leader');
    }
    this.maybeCompact(n);
  }

  private installMachine(n: SimNode, meta: SnapshotMeta, snap: MachineSnapshot | undefined): void {
    check(snap !== undefined && Array.isArray(snap.commands), `n${n.id} installs snapshot ${meta.index} without data`);
    check(meta.index > n.applied, `n${n.id} installs snapshot ${meta.index} not past applied ${n.applied}`);
    for (const c of snap.commands) {
      check(c.index <= meta.index, `snapshot ${meta.index} holds command at ${c.index}`);
      this.recordApplied(n, c.index, c.term, c.key);
    }
    for (const k of [...this.pending.keys()]) if (k.startsWith(`${n.id}:`)) this.pending.delete(k);
    n.commands = snap.commands.slice();
    this.loadMachine(n, snap.broker);
    for (const i of [...n.proposed.keys()]) if (i <= meta.index) n.proposed.delete(i);
    n.pendingSnap = undefined;
    n.applied = meta.index;
    n.conf = cloneConf(meta.conf);
    n.confHistory = [{ index: meta.index, conf: cloneConf(meta.conf) }];
    this.stats.snapshotsInstalled++;
    this.log(`n${n.id} installed snapshot ${meta.index}/${meta.term} conf=${fmtConf(meta.conf)}`);
  }

  private recordApplied(n: SimNode, index: number, term: number, key: string): void {
    const t = this.appliedTerm[index];
    if (t === undefined) {
      this.appliedTerm[index] = term;
      this.appliedKey[index] = key;
      if (index > this.maxAppliedIndex) this.maxAppliedIndex = index;
    } else {
      check(
        t === term && this.appliedKey[index] === key,
        `state machine safety: n${n.id} applies ${key}@${index}/${term}, another node applied ${this.appliedKey[index]}@${index}/${t}`,
      );
    }
  }

  private applyEntry(n: SimNode, e: Entry): void {
    check(e.index === n.applied + 1, `n${n.id} applies ${e.index} after ${n.applied}`);
    // Only what is durable is applied: the entry must be in this node's persisted log.
    check(n.storage.term(e.index) === e.term, `n${n.id} applies ${e.index}/${e.term} but its disk holds term ${n.storage.term(e.index)} there`);
    const key = entryKey(e);
    const first = this.appliedTerm[e.index] === undefined;
    this.recordApplied(n, e.index, e.term, key);
    n.applied = e.index;
    let reply: Reply | undefined;
    let cmd: string | undefined;
    if (e.type === EntryType.conf) {
      const cc = decodeConfChange(e.data);
      n.conf = n.core!.applyConfChange(cc);
      n.confHistory.push({ index: e.index, conf: cloneConf(n.conf) });
      this.log(`n${n.id} applied conf ${cc.type} n${"node" in cc ? cc.node : cc.voters.join(",")} @${e.index} -> ${fmtConf(n.conf)}`);
      if (n.core!.role === 'leader') this.stats.confApplied++;
      if (cc.type === 'remove' && (this.opts.decommissionRemoved ?? true)) this.decommission(cc.node);
    } else if (e.data.length > 0) {
      const env = decode<SimEnvelope>(e.data);
      cmd = env.id;
      n.commands.push({ index: e.index, term: e.term, cmd, key });
      const own = n.proposed.get(e.index);
      const stamped = own !== undefined && own.term === e.term ? own.stamped : stampedOf(env);
      const result = n.machine.apply(stamped, e.index);
      reply = result.reply;
      // Determinism: every node computes the same reply and effects for an index.
      const d = digest(encode(result));
      const had = this.replyDigest[e.index];
      if (had === undefined) {
        this.replyDigest[e.index] = d;
        this.replyNode[e.index] = n.id;
      } else {
        check(
          had === d,
          `determinism: n${n.id} replies ${JSON.stringify(reply).slice(0, 300)} to ${env.command.type} @${e.index}/${e.term}, unlike n${this.replyNode[e.index]} before it`,
        );
      }
      if (first) this.onApplied?.(n, e.index, stamped, reply);
    }
    n.proposed.delete(e.index);
    const pk = `${n.id}:${n.incarnation}:${e.index}`;
    const p = this.pending.get(pk);
    if (p) {
      this.pending.delete(pk);
      if (p.term === e.term) {
        check(cmd === p.cmd, `n${n.id} proposed ${p.cmd} at ${e.index}/${e.term} but applied ${key} there`);
        this.acked.set(p.cmd, { index: e.index, term: e.term });
        if (e.index > this.maxAckedIndex) this.maxAckedIndex = e.index;
        this.log(`ack ${p.cmd} @${e.index}/${e.term}`);
        const { onReply } = p;
        if (onReply && reply) {
          const r = reply;
          const at = { index: e.index, term: e.term, node: n };
          this.replyQueue.push(() => onReply(r, at));
        }
      }
    }
  }

  private decommission(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n || n.decommissioned) return;
    n.decommissioned = true;
    n.core = null;
    n.restartAt = -1;
    this.dropPendingOf(n);
    this.log(`n${id} decommissioned`);
  }

  private readConfirmed(n: SimNode, rs: ReadState): void {
    const k = `${n.id}:${n.incarnation}:${rs.context}`;
    const r = this.reads.get(k);
    check(r !== undefined, `n${n.id} confirms read ${rs.context} it was never asked (or twice)`);
    this.reads.delete(k);
    check(
      rs.index >= r.minIndex,
      `linearizability: n${n.id} confirms read ${rs.context} at index ${rs.index}, but a write was acknowledged at ${r.minIndex} before it was asked`,
    );
    this.stats.readsConfirmed++;
    this.log(`n${n.id} read ${rs.context} confirmed at ${rs.index}`);
  }

  /**
   * Log compaction: once `compactEvery` entries are applied past the snapshot, the node snapshots its
   * machine at the applied index; that snapshot replaces the log up to its index once `compactKeep`
   * more entries are applied (so some log stays behind the applied index, for lagging followers).
   */
  private maybeCompact(n: SimNode): void {
    const every = this.opts.compactEvery ?? 0;
    if (every <= 0 || !n.core) return;
    const snapIndex = n.storage.snapshot().index;
    const keep = this.opts.compactKeep ?? 0;
    if (!n.pendingSnap && n.applied - snapIndex >= every + keep) {
      let conf = n.confHistory[0]!.conf;
      for (const h of n.confHistory) if (h.index <= n.applied) conf = h.conf;
      n.pendingSnap = { index: n.applied, conf: cloneConf(conf), data: { commands: n.commands.slice(), broker: snapshotPayload(n) } };
    }
    const p = n.pendingSnap;
    if (!p || n.applied - p.index < keep) return;
    n.pendingSnap = undefined;
    if (p.index <= snapIndex) return;
    n.confHistory = [{ index: p.index, conf: p.conf }, ...n.confHistory.filter((h) => h.index > p.index)];
    n.storage.compact(p.index, p.conf, p.data);
    this.stats.compactions++;
    this.log(`n${n.id} compacted to ${p.index} conf=${fmtConf(p.conf)}`);
  }

  // ---- checkers ----

  private checkPersisted(n: SimNode, entries: Entry[]): void {
    for (const e of entries) {
      const k = `${e.index}:${e.term}`;
      const key = entryKey(e);
      const prevTerm = n.storage.term(e.index - 1);
      check(prevTerm !== undefined, `n${n.id} persisted ${k} with no entry before it`);
      const had = this.persistedKey.get(k);
      if (had === undefined) {
        this.persistedKey.set(k, key);
        this.persistedPrevTerm.set(k, prevTerm);
      } else {
        check(had === key, `log matching: n${n.id} persisted ${key} at ${k}, another node holds ${had} there`);
        const hadPrev = this.persistedPrevTerm.get(k);
        check(hadPrev === prevTerm, `log matching: n${n.id} has term ${prevTerm} before ${k}, another node has ${hadPrev}`);
      }
    }
  }

  private checkNode(n: SimNode, becameLeader: boolean): void {
    const core = n.core!;
    const committed = core.log.committed;
    check(committed >= n.lastCommit, `n${n.id} commit went back ${n.lastCommit} -> ${committed}`);
    n.lastCommit = committed;
    if (core.role === 'leader' || becameLeader) {
      const had = this.leadersByTerm.get(core.term);
      if (had === undefined) {
        this.leadersByTerm.set(core.term, n.id);
        this.checkLeaderCompleteness(n);
      } else {
        check(had === n.id, `election safety: n${n.id} and n${had} both lead term ${core.term}`);
      }
    }
  }

  private checkLeaderCompleteness(n: SimNode): void {
    const log = n.core!.log;
    const from = Math.max(log.firstIndex(), 1);
    const last = log.lastIndex();
    for (let i = from; i <= this.maxAppliedIndex; i++) {
      const t = this.appliedTerm[i];
      if (t === undefined) continue;
      check(i <= last, `leader completeness: n${n.id} leads term ${n.core!.term} with last index ${last}, but ${i} was applied`);
      check(log.term(i) === t, `leader completeness: n${n.id} leads term ${n.core!.term} with ${i}/${log.term(i)}, but ${i}/${t} was applied`);
    }
  }

  // ---- clients ----

  newCommand(): string {
    return `c${this.nextCmd++}`;
  }

  /**
   * Proposes a broker command (default: a retention step) to `to` (default: a live leader), stamped
   * with that node's clock, under a fresh name. Undefined when there is no such node. `onReply` runs
   * if the node applies it at the index and term it was given (the client's acknowledgement).
   */
  propose(to?: SimNode, cmd = this.newCommand(), command: Command = noopCommand, onReply?: ReplyListener): { cmd: string; result: ProposeResult } | undefined {
    const n = to ?? this.someLeader();
    if (!n?.core) return undefined;
    const stamped: StampedCommand = { nowMs: this.clockMs(n), command };
    const env: SimEnvelope = { id: cmd, nowMs: stamped.nowMs, command };
    const result = n.core.propose(encode(env));
    this.stats.proposals++;
    if (result.ok) {
      this.pending.set(`${n.id}:${n.incarnation}:${result.index}`, { cmd, term: result.term, onReply });
      n.proposed.set(result.index, { term: result.term, stamped });
      this.log(`n${n.id} propose ${cmd} ${command.type} -> ${result.index}/${result.term}`);
      // Sent before the leader's own write (Raft §10.2.1).
      if (this.rng.chance(this.opts.earlySendProbability ?? 0)) {
        for (const m of n.core.takeLeaderSends()) this.send(n, m);
        if (this.rng.chance(this.opts.earlySendCrashProbability ?? 0)) {
          this.log(`n${n.id} crashes after sending appends, before writing them`);
          this.crash(n.id, this.rng.int(1, 40));
          return { cmd, result };
        }
      }
    }
    this.drive(n);
    return { cmd, result };
  }

  proposeConfChange(cc: ConfChange, to?: SimNode): ProposeResult | undefined {
    const n = to ?? this.leader();
    if (!n?.core) return undefined;
    const result = n.core.proposeConfChange(cc);
    this.log(`n${n.id} propose conf ${cc.type} n${"node" in cc ? cc.node : cc.voters.join(",")} -> ${result.ok ? `${result.index}/${result.term}` : result.reason}`);
    if (result.ok) this.stats.confChanges++;
    this.drive(n);
    return result;
  }

  /** Asks `n` (default: the leader) for a linearizable read; returns its context or undefined. */
  readIndex(to?: SimNode): number | undefined {
    const n = to ?? this.someLeader();
    if (!n?.core) return undefined;
    const ctx = n.core.readIndex();
    if (ctx !== undefined) {
      this.stats.readsIssued++;
      this.reads.set(`${n.id}:${n.incarnation}:${ctx}`, { minIndex: this.maxAckedIndex });
      this.log(`n${n.id} readIndex ctx=${ctx} commit=${n.core.log.committed} (acked up to ${this.maxAckedIndex})`);
    }
    this.drive(n);
    return ctx;
  }

  pendingRead(n: SimNode, ctx: number): boolean {
    return this.reads.has(`${n.id}:${n.incarnation}:${ctx}`);
  }

  transfer(to: NodeId, from?: SimNode): boolean {
    const n = from ?? this.leader();
    if (!n?.core) return false;
    const ok = n.core.transferLeadership(to);
    this.log(`n${n.id} transfer leadership to n${to}: ${ok}`);
    if (ok) this.stats.transfers++;
    this.drive(n);
    return ok;
  }

  /** Members according to the leader's (or else any live node's) applied membership. */
  members(): NodeId[] {
    const l = this.leader();
    const conf = l ? l.conf : this.liveNodes()[0]?.conf;
    if (!conf) return [];
    return [...conf.voters, ...conf.learners].sort((a, b) => a - b);
  }

  /**
   * The liveness condition: one leader among the live nodes, every member alive and applied up to the
   * leader's commit, which covers its whole log; every acknowledged command applied everywhere.
   * Returns undefined when converged, else why not.
   */
  notConverged(): string | undefined {
    const leaders = this.leaders();
    if (leaders.length === 0) return 'no leader';
    if (leaders.length > 1) return `several leaders: ${leaders.map((l) => `n${l.id}@${l.core!.term}`).join(' ')}`;
    const l = leaders[0]!;
    const commit = l.core!.log.committed;
    if (commit !== l.core!.log.lastIndex()) return `leader n${l.id} commit ${commit} < last ${l.core!.log.lastIndex()}`;
    if (l.applied !== commit) return `leader n${l.id} applied ${l.applied} < commit ${commit}`;
    for (const id of this.members()) {
      const m = this.nodes.get(id);
      if (!m?.core) return `member n${id} is down`;
      if (m.applied !== commit) return `member n${id} applied ${m.applied}, leader commit ${commit} (role ${m.core.role}, term ${m.core.term}, leader term ${l.core!.term})`;
    }
    return undefined;
  }

  /** The end-state checks, once converged: members agree and hold every acknowledged command. */
  checkConverged(): void {
    const members = this.members().map((id) => this.node(id));
    const first = members[0];
    if (!first) throw new SimViolation('no members');
    const list = (n: SimNode) => n.commands.map((c) => `${c.index}/${c.term}:${c.cmd}`).join(',');
    const ref = list(first);
    for (const m of members) check(list(m) === ref, `n${m.id} and n${first.id} applied different commands`);
    const have = new Set<string>();
    for (const c of first.commands) {
      check(!have.has(c.cmd), `command ${c.cmd} applied twice`);
      have.add(c.cmd);
    }
    for (const [cmd, at] of this.acked) {
      check(have.has(cmd), `acknowledged ${cmd} (@${at.index}/${at.term}) is lost: not applied by the members`);
    }
    for (const n of this.liveNodes()) {
      // Every live node, member or not, holds a prefix of the members' history.
      const own = list(n);
      check(ref.startsWith(own), `n${n.id}'s applied commands are not a prefix of the members'`);
    }
    // The members' brokers are in one state, and hold the same messages.
    const state = (n: SimNode) => JSON.stringify(n.machine.snapshot());
    const refState = state(first);
    const refPayload = digest(encode(snapshotPayload(first)));
    for (const m of members) {
      check(state(m) === refState, `n${m.id} and n${first.id} end with different broker states:\n  ${state(m).slice(0, 600)}\n  ${refState.slice(0, 600)}`);
      check(digest(encode(snapshotPayload(m))) === refPayload, `n${m.id} and n${first.id} hold different messages`);
    }
  }

  describe(): string {
    const rows = [...this.nodes.values()].map((n) => {
      if (n.decommissioned) return `n${n.id}: decommissioned`;
      if (!n.core) return `n${n.id}: down (restart at ${n.restartAt}) last=${n.storage.lastIndex()}`;
      const c = n.core;
      return `n${n.id}: ${c.role} term=${c.term} leader=${c.leader} commit=${c.log.committed} applied=${n.applied} last=${c.log.lastIndex()} snap=${n.storage.snapshot().index} conf=${fmtConf(c.conf())}`;
    });
    const l = this.leader();
    if (l?.core) {
      // Diagnostics only: the leader's private progress table, to see why a follower is not fed.
      const prs = (l.core as unknown as { prs: Map<NodeId, { state: string; match: number; next: number; pendingSnapshot: number; isPaused(): boolean }> }).prs;
      const parts = [...prs].filter(([id]) => id !== l.id).map(([id, pr]) => `n${id}:${pr.state} match=${pr.match} next=${pr.next}${pr.state === 'snapshot' ? ` pending=${pr.pendingSnapshot}` : ''}${pr.isPaused() ? ' paused' : ''}`);
      rows.push(`leader n${l.id} progress: ${parts.join('; ')}`);
    }
    return [...rows, `cuts: ${this.net.describeCuts() || 'none'}; in flight: ${this.net.pending()}`].join('\n');
  }
}

export function fmtConf(c: ConfState): string {
  return `v[${c.voters.join(',')}]l[${c.learners.join(',')}]`;
}

export function fmtMsg(m: Message): string {
  const base = `${m.type} t${m.term}`;
  switch (m.type) {
    case 'vote':
      return `${base} ${m.pre ? 'pre ' : ''}${m.transfer ? 'transfer ' : ''}last=${m.lastIndex}/${m.lastTerm}`;
    case 'vote-response':
      return `${base} ${m.pre ? 'pre ' : ''}${m.granted ? 'granted' : 'rejected'}`;
    case 'append':
      return `${base} prev=${m.prevIndex}/${m.prevTerm} n=${m.entries.length}${m.entries.length ? ` [${m.entries[0]!.index}..${m.entries[m.entries.length - 1]!.index}]` : ''} commit=${m.commit}`;
    case 'append-response':
      return `${base} ${m.reject ? `reject ${m.index} hint=${m.hintIndex}` : `ok ${m.index}`}`;
    case 'heartbeat':
      return `${base} commit=${m.commit} ctx=${m.context}`;
    case 'heartbeat-response':
      return `${base} ctx=${m.context}`;
    case 'snapshot':
      return `${base} snap=${m.snapshot.index}/${m.snapshot.term} ${fmtConf(m.snapshot.conf)}`;
    case 'timeout-now':
      return base;
  }
}

export function isCoreAssertion(e: unknown): boolean {
  return e instanceof AssertionError;
}
