/**
 * One Raft node as a deterministic state machine, in the style of etcd's raft: the driver feeds it
 * ticks (`tick`), messages (`step`) and proposals (`propose`), and takes from it, in `ready()`, what to
 * persist, send and apply; `advance(ready)` says that was done. Time is ticks; randomness is injected.
 * Pre-vote and check-quorum keep a partitioned node from disrupting the group; leader transfer,
 * ReadIndex, log compaction with snapshots and single-server membership changes are here too.
 */
import { assert } from '../assert.js';
import { RaftLog, type LogReader } from './log.js';
import type { Message } from './messages.js';
import { Progress } from './progress.js';
import {
  EntryType,
  type ConfState,
  type Entry,
  type HardState,
  type NodeId,
  type ReadState,
  type Ready,
  type Role,
  type SnapshotMeta,
} from './types.js';

export interface RaftOptions {
  id: NodeId;
  group: number;
  storage: LogReader;
  hardState: HardState | null;
  /** The membership at the start (from the snapshot, then the log's applied conf changes). */
  conf: ConfState;
  applied: number;
  /** Ticks without a leader before a follower campaigns (randomized in [n, 2n)). */
  electionTicks: number;
  heartbeatTicks: number;
  /** Injected randomness in [0, 1): the simulator seeds it. */
  random: () => number;
  inflightMax: number;
  appendBytesMax: number;
  applyBytesMax: number;
}

/**
 * Membership changes, one server at a time. `bootstrap` is the first entry of a new group's log (every
 * founding member writes the same one); `address` travels with `add-learner` so every member learns
 * how to reach the new one (the core does not look at it).
 */
export type ConfChange =
  | { type: 'bootstrap'; voters: NodeId[] }
  | { type: 'add-learner'; node: NodeId; address?: string }
  | { type: 'promote'; node: NodeId }
  | { type: 'remove'; node: NodeId };

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: false; reason: 'not-leader' | 'transferring' | 'conf-change-pending' | 'invalid-conf-change'; leaderHint: NodeId };

const noLeader = 0;

export class RaftCore {
  readonly id: NodeId;
  readonly group: number;
  term = 0;
  vote: NodeId = 0;
  leader: NodeId = noLeader;
  role: Role = 'follower';
  readonly log: RaftLog;
  private voters = new Set<NodeId>();
  /** conf()'s answer, until the membership changes. */
  private confState: ConfState | undefined;
  /** maybeCommit's working space (one slot per voter; it grows with the membership). */
  private readonly matchScratch: number[] = [];
  private learners = new Set<NodeId>();
  private prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks = 0;
  private leadTransferee: NodeId = noLeader;
  /** A conf change entry not yet applied (the leader allows one at a time). */
  private pendingConfIndex = 0;
  private readCounter = 0;
  private pendingReads: { index: number; context: number; acks: Set<NodeId> }[] = [];
  private readStates: ReadState[] = [];
  private msgs: Message[] = [];
  /** Proposals since the last ready: one broadcast carries them all. */
  private broadcastPending = false;
  private prevHardState: HardState;
  private prevSoft: { leader: NodeId; role: Role };
  private readonly opts: RaftOptions;

  constructor(opts: RaftOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.group = opts.group;
    const hs = opts.hardState ?? { term: 0, vote: 0, commit: 0 };
    this.log = new RaftLog(opts.storage, Math.max(hs.commit, opts.storage.firstIndex() - 1), opts.applied);
    this.term = hs.term;
    this.vote = hs.vote;
    this.setConf(opts.conf);
    this.prevHardState = { ...hs };
    this.prevSoft = { leader: this.leader, role: this.role };
    this.becomeFollower(this.term, noLeader);
  }

  // ---- membership ----

  private setConf(conf: ConfState): void {
    this.confState = undefined;
    this.voters = new Set(conf.voters);
    this.learners = new Set(conf.learners);
    for (const id of [...this.prs.keys()]) if (!this.voters.has(id) && !this.learners.has(id)) this.prs.delete(id);
    for (const id of [...this.voters, ...this.learners]) {
      const pr = this.prs.get(id);
      if (pr) pr.isLearner = this.learners.has(id);
      else this.prs.set(id, new Progress(this.log.lastIndex() + 1, this.opts.inflightMax, this.learners.has(id)));
    }
  }

  /** The membership, sorted. Kept until it changes (the driver asks every step): do not modify it. */
  conf(): ConfState {
    this.confState ??= Object.freeze({
      voters: Object.freeze([...this.voters].sort((a, b) => a - b)) as NodeId[],
      learners: Object.freeze([...this.learners].sort((a, b) => a - b)) as NodeId[],
    });
    return this.confState;
  }

  /** The driver applied a conf change entry: the membership changes now (etcd's ApplyConfChange). */
  applyConfChange(cc: ConfChange): ConfState {
    this.setConf(nextConf(this.conf(), cc));
    if (this.role === 'leader') {
      if (!this.voters.has(this.id)) {
        // A removed leader steps down; the rest elect a new one.
        this.becomeFollower(this.term, noLeader);
      } else if (this.maybeCommit()) {
        this.bcastAppend();
      }
      if (this.leadTransferee !== noLeader && !this.voters.has(this.leadTransferee)) this.leadTransferee = noLeader;
    }
    return this.conf();
  }

  private promotable(): boolean {
    return this.voters.has(this.id);
  }

  private quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  // ---- roles ----

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = 0;
    }
    this.leader = noLeader;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTicks = this.opts.electionTicks + Math.floor(this.opts.random() * this.opts.electionTicks);
    this.votes.clear();
    this.leadTransferee = noLeader;
    this.pendingReads = [];
    for (const [id, pr] of this.prs) {
      const fresh = new Progress(this.log.lastIndex() + 1, this.opts.inflightMax, pr.isLearner);
      if (id === this.id) fresh.match = this.log.stableLastIndex();
      this.prs.set(id, fresh);
    }
  }

  private becomeFollower(term: number, leader: NodeId): void {
    this.reset(term);
    this.leader = leader;
    this.role = 'follower';
  }

  private becomePreCandidate(): void {
    // A pre-candidate changes neither term nor vote: a partitioned node cannot inflate terms.
    this.votes.clear();
    this.leader = noLeader;
    this.role = 'pre-candidate';
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.leader = this.id;
    this.role = 'leader';
    for (const pr of this.prs.values()) pr.recentActive = true;
    // A conf change in the uncommitted tail stays pending until it is applied.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op entry of the new term: commits everything before it (Raft §5.4.2).
    this.appendEntries([{ index: 0, term: 0, type: EntryType.normal, data: new Uint8Array(0) }]);
  }

  // ---- driver inputs ----

  tick(): void {
    if (this.role === 'leader') {
      this.heartbeatElapsed++;
      this.electionElapsed++;
      if (this.electionElapsed >= this.opts.electionTicks) {
        this.electionElapsed = 0;
        // check-quorum: a leader that has not heard from a majority in an election timeout steps down.
        if (!this.quorumActive()) {
          this.becomeFollower(this.term, noLeader);
          return;
        }
        for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
        this.leadTransferee = noLeader;
      }
      if (this.heartbeatElapsed >= this.opts.heartbeatTicks) {
        this.heartbeatElapsed = 0;
        // Carry the newest pending read, so a read whose own round was lost still gets its quorum.
        this.bcastHeartbeat(this.pendingReads[this.pendingReads.length - 1]?.context ?? 0);
      }
      // A snapshot whose ack never came (lost, or the follower restarted): probe again.
      for (const [id, pr] of this.prs) {
        if (pr.state === 'snapshot' && ++pr.snapshotTicks >= this.opts.electionTicks) {
          pr.becomeProbe();
          this.sendAppend(id);
        }
      }
      return;
    }
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTicks) {
      this.electionElapsed = 0;
      this.campaign(false);
    }
  }

  /** Starts an election now (pre-vote first unless `transfer`). */
  campaign(transfer: boolean): void {
    if (!this.promotable()) return;
    // A transfer skips the pre-vote: the leader asked for it.
    this.startElection(!transfer, transfer);
  }

  private startElection(pre: boolean, transfer: boolean): void {
    if (pre) this.becomePreCandidate();
    else this.becomeCandidate();
    const term = pre ? this.term + 1 : this.term;
    this.votes.set(this.id, true);
    if (this.tallyVotes() === 'won') {
      if (pre) this.startElection(false, transfer);
      else this.becomeLeader();
      return;
    }
    for (const id of this.voters) {
      if (id === this.id) continue;
      this.send({
        type: 'vote',
        pre,
        group: this.group,
        from: this.id,
        to: id,
        term,
        lastIndex: this.log.lastIndex(),
        lastTerm: this.log.lastTerm(),
        transfer,
      });
    }
  }

  private tallyVotes(): 'won' | 'lost' | 'pending' {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    if (granted >= this.quorum()) return 'won';
    if (rejected >= this.quorum()) return 'lost';
    return 'pending';
  }

  propose(data: Uint8Array): ProposeResult {
    return this.proposeEntry(EntryType.normal, data);
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    if (this.role === 'leader' && this.pendingConfIndex > this.log.applied) {
      return { ok: false, reason: 'conf-change-pending', leaderHint: this.leader };
    }
    const valid =
      (cc.type === 'add-learner' && !this.voters.has(cc.node) && !this.learners.has(cc.node)) ||
      (cc.type === 'promote' && this.learners.has(cc.node)) ||
      (cc.type === 'remove' && (this.voters.has(cc.node) || this.learners.has(cc.node)) && !(this.voters.size === 1 && this.voters.has(cc.node)));
    if (!valid) return { ok: false, reason: 'invalid-conf-change', leaderHint: this.leader };
    const r = this.proposeEntry(EntryType.conf, encodeConfChange(cc));
    if (r.ok) this.pendingConfIndex = r.index;
    return r;
  }

  private proposeEntry(type: EntryType, data: Uint8Array): ProposeResult {
    if (this.role !== 'leader') return { ok: false, reason: 'not-leader', leaderHint: this.leader };
    if (this.leadTransferee !== noLeader) return { ok: false, reason: 'transferring', leaderHint: this.leader };
    const index = this.appendEntries([{ index: 0, term: 0, type, data }]);
    this.broadcastPending = true;
    return { ok: true, index, term: this.term };
  }

  /** Hands leadership to `to` once its log is caught up. */
  transferLeadership(to: NodeId): boolean {
    if (this.role !== 'leader' || !this.voters.has(to)) return false;
    if (to === this.id) return true;
    this.leadTransferee = to;
    this.electionElapsed = 0;
    const pr = this.prs.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to);
    return true;
  }

  /**
   * Linearizable read: once a majority confirms this node still leads, `readStates` in a later ready
   * carries (commit index, context); the read may be served when that index is applied.
   * Returns the context, or undefined when this node cannot serve reads now.
   */
  readIndex(): number | undefined {
    if (this.role !== 'leader') return undefined;
    // A new leader must commit an entry of its own term before it knows the commit index.
    if (this.log.term(this.log.committed) !== this.term) return undefined;
    const context = ++this.readCounter;
    if (this.voters.size === 1) {
      this.readStates.push({ index: this.log.committed, context });
      return context;
    }
    this.pendingReads.push({ index: this.log.committed, context, acks: new Set([this.id]) });
    this.bcastHeartbeat(context);
    return context;
  }

  // ---- messages ----

  step(m: Message): void {
    if (m.group !== this.group || m.to !== this.id) return;
    if (m.term > this.term) {
      if (m.type === 'vote') {
        // Leader lease (check-quorum): a node that heard from a leader within the election timeout
        // ignores campaigns, so a node that was cut off cannot depose a healthy leader on its return.
        const inLease = this.leader !== noLeader && this.electionElapsed < this.opts.electionTicks;
        if (!m.transfer && inLease) return;
        if (!m.pre) this.becomeFollower(m.term, noLeader);
      } else if (m.type === 'vote-response' && m.pre) {
        // A granted pre-vote carries the term the sender would campaign in: no term change.
        if (!m.granted) this.becomeFollower(m.term, noLeader);
      } else if (m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, noLeader);
      }
    } else if (m.term < this.term) {
      if (m.type === 'append' || m.type === 'heartbeat') {
        // A stale leader (e.g. back from a partition): tell it the term so it steps down.
        this.send({ type: 'append-response', group: this.group, from: this.id, to: m.from, term: this.term, index: 0, reject: true, hintIndex: 0 });
      } else if (m.type === 'vote' && m.pre) {
        this.send({ type: 'vote-response', pre: true, group: this.group, from: this.id, to: m.from, term: this.term, granted: false });
      }
      return;
    }

    if (m.type === 'vote') {
      this.handleVote(m);
      return;
    }

    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'pre-candidate':
      case 'candidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
    }
  }

  private handleVote(m: Extract<Message, { type: 'vote' }>): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === 0 && this.leader === noLeader) ||
      (m.pre && m.term > this.term);
    let grant = canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm);
    // Two followers whose timers fire together would grant each other's pre-vote, both campaign, each
    // vote for itself and split the vote: one more election timeout (1–2 s) with no leader. So a
    // pre-candidate grants a rival pre-candidate only one whose log is ahead of its own, or as far and
    // whose id is lower; one of the two goes on. Pre-votes decide nothing (safety rests on real votes),
    // only who campaigns.
    const rivalAhead = m.lastTerm > this.log.lastTerm() || (m.lastTerm === this.log.lastTerm() && m.lastIndex > this.log.lastIndex());
    const rivalRefused = grant && m.pre && this.role === 'pre-candidate' && !rivalAhead && m.from > this.id;
    if (rivalRefused) grant = false;
    if (grant && !m.pre) {
      this.electionElapsed = 0;
      this.vote = m.from;
    }
    this.send({
      type: 'vote-response',
      pre: m.pre,
      group: this.group,
      from: this.id,
      to: m.from,
      term: grant ? m.term : this.term,
      granted: grant,
    });
    // The rival's campaign shows that the leader lease is over for the voters it reached: ask them
    // again now (a voter that ignored this node's pre-vote inside its lease would otherwise make it wait
    // out a whole election timeout while the rival waits for it).
    if (rivalRefused) this.startElection(true, false);
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'append':
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'snapshot':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case 'vote-response': {
        if (m.pre !== (this.role === 'pre-candidate')) return;
        this.votes.set(m.from, m.granted);
        const result = this.tallyVotes();
        if (result === 'won') {
          if (this.role === 'pre-candidate') this.startElection(false, false);
          else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === 'lost') {
          this.becomeFollower(this.term, noLeader);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'append':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleHeartbeat(m);
        return;
      case 'snapshot':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshot(m);
        return;
      case 'timeout-now':
        if (this.promotable()) this.startElection(false, true);
        return;
      default:
        return;
    }
  }

  private handleAppend(m: Extract<Message, { type: 'append' }>): void {
    const reply = (index: number, reject: boolean, hintIndex: number) =>
      this.send({ type: 'append-response', group: this.group, from: this.id, to: m.from, term: this.term, index, reject, hintIndex });
    if (m.prevIndex < this.log.committed) {
      reply(this.log.committed, false, 0);
      return;
    }
    const lastNew = this.log.maybeAppend(m.prevIndex, m.prevTerm, m.commit, m.entries);
    if (lastNew !== undefined) reply(lastNew, false, 0);
    else reply(m.prevIndex, true, Math.min(m.prevIndex, this.log.lastIndex()));
  }

  private handleHeartbeat(m: Extract<Message, { type: 'heartbeat' }>): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({ type: 'heartbeat-response', group: this.group, from: this.id, to: m.from, term: this.term, context: m.context });
  }

  private handleSnapshot(m: Extract<Message, { type: 'snapshot' }>): void {
    const s = m.snapshot;
    const reply = (index: number) =>
      this.send({ type: 'append-response', group: this.group, from: this.id, to: m.from, term: this.term, index, reject: false, hintIndex: 0 });
    if (s.index <= this.log.committed) {
      reply(this.log.committed);
      return;
    }
    if (this.log.matchTerm(s.index, s.term)) {
      // We already hold the snapshot's entries: just move the commit forward.
      this.log.commitTo(s.index);
      reply(this.log.lastIndex());
      return;
    }
    this.log.restore({ meta: s, data: m.data });
    this.setConf(s.conf);
    reply(this.log.lastIndex());
  }

  private stepLeader(m: Message): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case 'append-response': {
        pr.recentActive = true;
        if (m.reject) {
          if (pr.maybeDecrTo(m.index, m.hintIndex)) {
            if (pr.state === 'replicate') pr.becomeProbe();
            this.sendAppend(m.from);
          }
          return;
        }
        const wasPaused = pr.isPaused();
        const updated = pr.maybeUpdate(m.index);
        // The follower holds the snapshot (this ack may repeat a match we already knew): resume.
        if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeProbe();
        if (!updated) {
          if (wasPaused && !pr.isPaused()) this.sendAppend(m.from);
          return;
        }
        if (pr.state === 'probe') pr.becomeReplicate();
        if (this.maybeCommit()) this.bcastAppend();
        else this.sendAppend(m.from);
        // Keep the pipe full while there is more to send.
        while (pr.state === 'replicate' && !pr.isPaused() && pr.next <= this.log.lastIndex()) {
          if (!this.sendAppend(m.from)) break;
        }
        if (this.leadTransferee === m.from && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
        return;
      }
      case 'heartbeat-response': {
        pr.recentActive = true;
        pr.heartbeatAnswered();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
        if (m.context > 0) this.ackReads(m.from, m.context);
        return;
      }
      default:
        return;
    }
  }

  private ackReads(from: NodeId, context: number): void {
    for (const r of this.pendingReads) if (r.context <= context) r.acks.add(from);
    // Reads are released in order: a read is confirmed when it and every earlier one have a quorum.
    while (this.pendingReads.length > 0) {
      const r = this.pendingReads[0]!;
      let acks = 0;
      for (const id of r.acks) if (this.voters.has(id)) acks++;
      if (acks < this.quorum()) break;
      this.pendingReads.shift();
      this.readStates.push({ index: r.index, context: r.context });
    }
  }

  // ---- leader internals ----

  private appendEntries(entries: Entry[]): number {
    let index = this.log.lastIndex();
    for (const e of entries) {
      e.index = ++index;
      e.term = this.term;
    }
    this.log.append(entries);
    // The leader's own match moves when the driver has persisted these (advance).
    return index;
  }

  private maybeCommit(): boolean {
    // The quorum-th highest match, found in place: this runs on every acknowledgement.
    const matches = this.matchScratch;
    let n = 0;
    for (const id of this.voters) {
      const match = this.prs.get(id)?.match ?? 0;
      let i = n++;
      for (; i > 0 && matches[i - 1]! < match; i--) matches[i] = matches[i - 1]!;
      matches[i] = match;
    }
    const index = n >= this.quorum() ? matches[this.quorum() - 1]! : 0;
    // Only entries of the current term commit by counting replicas (Raft §5.4.2).
    if (index > this.log.committed && this.log.term(index) === this.term) {
      this.log.commitTo(index);
      return true;
    }
    return false;
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const id of this.voters) if (id === this.id || this.prs.get(id)?.recentActive) active++;
    return active >= this.quorum();
  }

  private bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private bcastHeartbeat(context: number): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      this.send({
        type: 'heartbeat',
        group: this.group,
        from: this.id,
        to: id,
        term: this.term,
        // Never ahead of what the follower is known to hold.
        commit: Math.min(pr.match, this.log.committed),
        context,
      });
    }
  }

  /** Sends the follower what it lacks: entries, or the snapshot when they are compacted away. */
  private sendAppend(to: NodeId): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined || pr.next < this.log.firstIndex()) {
      const snapshot: SnapshotMeta = this.opts.storage.snapshot();
      if (snapshot.index === 0) return false;
      pr.becomeSnapshot(snapshot.index);
      this.send({ type: 'snapshot', group: this.group, from: this.id, to, term: this.term, snapshot, data: undefined });
      return true;
    }
    const entries = this.log.slice(pr.next, this.log.lastIndex() + 1, this.opts.appendBytesMax);
    this.send({ type: 'append', group: this.group, from: this.id, to, term: this.term, prevIndex, prevTerm, entries, commit: this.log.committed });
    pr.sentAppend(entries.length > 0 ? entries[entries.length - 1]!.index : prevIndex, entries.length);
    return true;
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'timeout-now', group: this.group, from: this.id, to, term: this.term });
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }

  /**
   * A leader's appends and heartbeats for what was proposed since the last ready, handed out now so
   * the driver can send them while its own write is still in progress: followers then write in
   * parallel with it (Raft §10.2.1). Everything else stays for the next ready. Empty unless leading.
   */
  takeLeaderSends(): Message[] {
    if (this.role !== 'leader') return [];
    if (this.broadcastPending) {
      this.broadcastPending = false;
      this.bcastAppend();
    }
    const sends: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.msgs) (m.type === 'append' || m.type === 'heartbeat' ? sends : rest).push(m);
    this.msgs = rest;
    return sends;
  }

  /** The leader's knowledge of a member's log (0 when unknown or not leading). */
  matchIndex(id: NodeId): number {
    if (this.role !== 'leader') return id === this.id ? this.log.stableLastIndex() : 0;
    return this.prs.get(id)?.match ?? 0;
  }

  /** The transport could not deliver a snapshot: go back to probing. */
  reportSnapshotFailed(to: NodeId): void {
    const pr = this.prs.get(to);
    if (pr?.state === 'snapshot') {
      pr.pendingSnapshot = 0;
      pr.becomeProbe();
    }
  }

  /**
   * Committed entries not handed out yet, handed out now (and not in a later ready): the driver may
   * apply them at once instead of waiting for its write in progress to finish. They are durable on a
   * majority (on a follower, in its own log too), so applying them early is safe.
   */
  takeCommitted(): Entry[] {
    const entries = this.log.nextCommitted(this.opts.applyBytesMax, this.applyUnstable());
    if (entries.length > 0) this.log.appliedTo(entries[entries.length - 1]!.index);
    return entries;
  }

  /**
   * A leader applies what a majority of followers holds even while its own write of those entries is
   * still in flight: a committed entry is durable on a majority whether or not the leader is part of
   * it, and it can never be truncated, so the client's answer need not wait for the leader's disk
   * (etcd applies unstable committed entries too). Followers apply only what they have persisted.
   */
  private applyUnstable(): boolean {
    return this.role === 'leader';
  }

  // ---- ready / advance ----

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  hasReady(): boolean {
    const hs = this.hardState();
    return (
      this.msgs.length > 0 ||
      this.log.unstableEntries().length > 0 ||
      this.log.pendingSnapshot !== undefined ||
      this.log.hasNextCommitted(this.applyUnstable()) ||
      this.readStates.length > 0 ||
      hs.term !== this.prevHardState.term ||
      hs.vote !== this.prevHardState.vote ||
      hs.commit !== this.prevHardState.commit ||
      this.leader !== this.prevSoft.leader ||
      this.role !== this.prevSoft.role
    );
  }

  ready(): Ready {
    if (this.broadcastPending) {
      this.broadcastPending = false;
      if (this.role === 'leader') this.bcastAppend();
    }
    const hs = this.hardState();
    const hsChanged = hs.term !== this.prevHardState.term || hs.vote !== this.prevHardState.vote || hs.commit !== this.prevHardState.commit;
    const softChanged = this.leader !== this.prevSoft.leader || this.role !== this.prevSoft.role;
    // Committed entries are marked handed out at once, so takeCommitted() never hands them out twice.
    const committed = this.takeCommitted();
    const ready: Ready = {
      entries: [...this.log.unstableEntries()],
      hardState: hsChanged ? hs : null,
      committed,
      messages: this.msgs,
      snapshot: this.log.pendingSnapshot,
      readStates: this.readStates,
      softState: softChanged ? { leader: this.leader, role: this.role } : undefined,
    };
    this.msgs = [];
    this.readStates = [];
    return ready;
  }

  /** The driver did what `ready` asked. */
  advance(ready: Ready): void {
    if (ready.hardState) this.prevHardState = ready.hardState;
    if (ready.softState) this.prevSoft = ready.softState;
    if (ready.snapshot) this.log.stableSnapshotTo(ready.snapshot.meta.index);
    if (ready.entries.length > 0) {
      const last = ready.entries[ready.entries.length - 1]!;
      this.log.stableTo(last.index, last.term);
      if (this.role === 'leader') {
        const self = this.prs.get(this.id);
        if (self && self.maybeUpdate(this.log.stableLastIndex()) && this.maybeCommit()) this.bcastAppend();
      }
    }
    if (ready.committed.length > 0) {
      const last = ready.committed[ready.committed.length - 1]!;
      this.log.appliedTo(last.index);
    }
  }
}

/** The membership after a change (pure; the core and the driver's start-up both use it). */
export function nextConf(conf: ConfState, cc: ConfChange): ConfState {
  const voters = new Set(conf.voters);
  const learners = new Set(conf.learners);
  if (cc.type === 'bootstrap') {
    voters.clear();
    learners.clear();
    for (const id of cc.voters) voters.add(id);
  } else if (cc.type === 'add-learner') {
    if (!voters.has(cc.node)) learners.add(cc.node);
  } else if (cc.type === 'promote') {
    if (learners.delete(cc.node)) voters.add(cc.node);
  } else {
    voters.delete(cc.node);
    learners.delete(cc.node);
  }
  return { voters: [...voters].sort((a, b) => a - b), learners: [...learners].sort((a, b) => a - b) };
}

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(cc));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const cc = JSON.parse(new TextDecoder().decode(data)) as ConfChange;
  assert(cc.type === 'bootstrap' || cc.type === 'add-learner' || cc.type === 'promote' || cc.type === 'remove', 'bad conf change entry');
  return cc;
}
