/**
 * The driver of one node: the single loop around the Raft core. It feeds the core ticks, messages and
 * proposals, and for each Ready: applies the committed entries to the broker state machine (answering
 * their proposers), persists new entries, hard state and the machine's pending writes in one LMDB
 * transaction with one fsync (every proposal that arrived meanwhile shares it: group commit), only
 * then sends the core's messages, and advances the core. (A follower's step that only appends
 * resolves once its entries are synced into the segment files, its LMDB transaction landing behind:
 * storage/lmdb-storage.ts, `commitsBehind`.) Time enters here and only here: the tick
 * timer, and `clock`, stamped into each command.
 *
 * A write that fails for lack of room (StorageFullError: storage has undone it) does not stop the
 * node: the driver tells the disk guard, which refuses publishes, and writes the same step again after
 * a pause (growing to 2 s) until it succeeds, without advancing the core meanwhile. A leader goes on
 * sending appends and heartbeats and applying what a majority of followers commits; what needs its own
 * disk waits. Any other storage failure stops the node (`fail`).
 */
import { createHash } from 'node:crypto';
import { assert } from '../core/assert.js';
import { limits } from '../core/limits.js';
import { BrokerMachine, type Effect, type Reply } from '../core/broker/machine.js';
import type { Command, PublishItem, StampedCommand } from '../core/broker/commands.js';
import { RaftCore, decodeConfChange, encodeConfChange, nextConf, type ConfChange } from '../core/raft/raft-core.js';
import type { Message } from '../core/raft/messages.js';
import { EntryType, type Entry, type NodeId, type SnapshotMeta } from '../core/raft/types.js';
import { decodeCommand, decodeStamped, encodeCommand, encodeStamped } from '../storage/command-codec.js';
import { entryInSegmentBytesMin, LmdbStorage, LocatedRecords, StorageFullError, type ReceivedSnapshot, type StepWrite } from '../storage/lmdb-storage.js';
import type { PeerFrame, SnapshotChunk } from '../transport/peer-codec.js';
import { noteAppend, noteApplied, noteLeader, noteSnapshot, noteStorageWriteFailure } from '../metrics/registry.js';

/** How long removals may wait for a snapshot before one is taken for them. */
const deletesSnapshotDelayMs = 5000;
/** Pauses before a write that found no room is tried again: doubling from the first to the last. */
const writeRetryDefaults = { firstMs: 100, maxMs: 2000 };

export class NodeUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeUnavailableError';
  }
}

/** A membership change that does not fit the current membership (e.g. adding a member twice). */
export class MembershipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MembershipError';
  }
}

/** This node does not lead: the caller should go to `leaderHint` (0 when no leader is known). */
export class NotLeaderError extends Error {
  constructor(readonly leaderHint: NodeId) {
    super(leaderHint ? `node ${leaderHint} leads` : 'no leader');
    this.name = 'NotLeaderError';
  }
}

/** Told when storage writes start failing for lack of room and when one succeeds again (the disk guard). */
export interface WriteFailureListener {
  noteWriteFailed(reason: string): void;
  noteWriteSucceeded(): void;
}

/** Told of a publish just proposed: its topic, messages and the time it is stamped with. */
export type PublishProposedListener = (topic: string, messages: readonly PublishItem[], nowMs: number) => void;

interface Waiter {
  term: number;
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
}

export interface HeraldNodeOptions {
  dataDir: string;
  nodeId?: NodeId;
  /** The founding voters, written as the first log entry of a new data dir (default: this node alone).
   * Null for a node that joins an existing group: it starts empty and learns everything from the leader. */
  bootstrapVoters?: NodeId[] | null;
  /** sync (default): fsync before acknowledging; relaxed: acknowledge once written to the OS. */
  durability?: 'sync' | 'relaxed';
  /** Told whenever the members' addresses change (id → "host:raftPort:httpPort"). */
  onAddresses?: (addresses: Map<NodeId, string>) => void;
  clock?: () => number;
  random?: () => number;
  /** Sends Raft messages to peers (none for a single node). */
  send?: (messages: Message[]) => void;
  /** Sends one chunk of a snapshot stream with backpressure; false when the stream must be abandoned. */
  sendChunk?: (chunk: SnapshotChunk) => Promise<boolean>;
  /** Message bodies per snapshot chunk (default 4 MiB). */
  snapshotChunkBytes?: number;
  /** How members are reached (id → "host:raftPort:httpPort"), as configured; the log adds to it. */
  addresses?: Map<NodeId, string>;
  tickMs?: number;
  electionTicks?: number;
  /** Retention and housekeeping check period. */
  housekeepingIntervalMs?: number;
  /** Entries between broker snapshots (default limits.snapshotEntriesInterval). */
  snapshotEntriesInterval?: number;
  /** Told when writes fail for lack of room and when they work again. */
  writeFailures?: WriteFailureListener;
  /** Pauses before a write that found no room is tried again (default 100 ms doubling to 2 s). */
  writeRetry?: { firstMs: number; maxMs: number };
}


export class HeraldNode {
  readonly machine: BrokerMachine;
  readonly id: NodeId;
  private readonly storage: LmdbStorage;
  private readonly raft: RaftCore;
  private readonly clock: () => number;
  private readonly send: (messages: Message[]) => void;
  private readonly sendChunk: (chunk: SnapshotChunk) => Promise<boolean>;
  private readonly snapshotChunkBytes: number;
  /** Followers a snapshot is being streamed to (one stream each). */
  private readonly streaming = new Set<NodeId>();
  /** A snapshot stream coming in from the leader. */
  private incoming: { from: NodeId; index: number; next: number; state: unknown; records: LocatedRecords } | null = null;
  /** Proposers waiting for their entry to be applied, by log index. */
  private readonly waiters = new Map<number, Waiter>();
  /** Commands proposed here, kept decoded (with the term they were proposed in) so applying them does
   * not decode them again. Only an entry of that same term is that command. */
  private readonly proposed = new Map<number, { term: number; stamped: StampedCommand }>();
  private readonly effectListeners: ((effects: Effect[]) => void)[] = [];
  private readonly anyRoleEffectListeners: ((effects: Effect[]) => void)[] = [];
  private readonly publishProposedListeners: PublishProposedListener[] = [];
  private stepping = false;
  /** A snapshot is to be taken in the next step even if none is due by count (see snapshotForDeletes). */
  private snapshotWanted = false;
  /** Removed keys are being cleared and the node is idle: steps with nothing else to write clear them. */
  private idleClearing = false;
  /** Steps run so far, and as the last tick saw it (no step since: the node was idle for a tick). */
  private stepsRun = 0;
  private stepsRunAtTick = 0;
  private lastSnapshotAtMs = Date.now();
  private leaderSendsScheduled = false;
  private closed = false;
  private appliedIndex = 0;
  private snapshotIndex = 0;
  private logBytesSinceSnapshot = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private idleWaiters: (() => void)[] = [];
  private failure: Error | null = null;
  /** The log index this node must have applied before it serves (what it knew to be committed at start). */
  private readonly startupIndex: number;
  private caughtUpWaiters: (() => void)[] = [];
  private readonly snapshotEntriesInterval: number;
  private readonly addresses: Map<NodeId, string>;
  private readonly onAddresses: (addresses: Map<NodeId, string>) => void;
  private readonly writeFailures: WriteFailureListener | undefined;
  private readonly writeRetry: { firstMs: number; maxMs: number };
  /** Since when writes fail for lack of room, and how many attempts did (undefined: they work). */
  private writeStall: { sinceMs: number; attempts: number } | undefined;
  /** Ends the pause before a write is tried again (close() calls it). */
  private endWritePause: (() => void) | undefined;

  constructor(options: HeraldNodeOptions) {
    this.id = options.nodeId ?? 1;
    this.clock = options.clock ?? Date.now;
    this.send = options.send ?? (() => {});
    this.sendChunk = options.sendChunk ?? (async () => false);
    this.snapshotChunkBytes = options.snapshotChunkBytes ?? 4 * 1024 * 1024;
    this.snapshotEntriesInterval = options.snapshotEntriesInterval ?? limits.snapshotEntriesInterval;
    this.addresses = new Map(options.addresses ?? []);
    this.onAddresses = options.onAddresses ?? (() => {});
    this.writeFailures = options.writeFailures;
    this.writeRetry = options.writeRetry ?? writeRetryDefaults;
    this.storage = new LmdbStorage(options.dataDir, 0, { durability: options.durability ?? 'sync' });
    this.machine = new BrokerMachine(this.storage);
    const empty = { voters: [], learners: [] };
    this.storage.load(empty);
    const bootstrapVoters = options.bootstrapVoters === undefined ? [this.id] : options.bootstrapVoters;
    if (this.storage.isEmpty() && bootstrapVoters) {
      // A new group's first entry, the same on every founding member: the membership itself.
      const data = encodeConfChange({ type: 'bootstrap', voters: [...bootstrapVoters].sort((a, b) => a - b) });
      this.storage.bootstrapSync({ index: 1, term: 1, type: EntryType.conf, data }, { term: 1, vote: 0, commit: 1 });
    }
    const loaded = this.storage.load(empty);
    if (loaded.snapshot) {
      this.machine.restore(loaded.snapshot.state);
      this.appliedIndex = this.snapshotIndex = loaded.snapshot.meta.index;
      for (const [id, a] of Object.entries(loaded.snapshot.meta.addresses ?? {})) this.addresses.set(Number(id), a);
    }
    // The membership as the whole stored log says (committed or not), to know whether this node votes alone.
    let latestConf = this.storage.snapshot().conf;
    for (const e of this.storage.entriesOfType(EntryType.conf, this.appliedIndex + 1)) latestConf = nextConf(latestConf, decodeConfChange(e.data));
    this.raft = new RaftCore({
      id: this.id,
      group: 0,
      storage: this.storage,
      hardState: loaded.hardState,
      conf: this.storage.snapshot().conf,
      applied: this.appliedIndex,
      // Fine ticks (20 ms) under 1–2 s election timeouts: two followers rarely draw the same tick, so
      // split votes, which cost a whole extra timeout, stay rare. Heartbeats every 100 ms.
      electionTicks: options.electionTicks ?? 50,
      heartbeatTicks: 5,
      random: options.random ?? Math.random,
      inflightMax: 256,
      appendBytesMax: 4 * 1024 * 1024,
      applyBytesMax: 64 * 1024 * 1024,
    });
    // A node that votes alone committed everything in its log when it wrote it, so it serves only once
    // it has applied all of it (it campaigns as soon as its membership is applied: see run()).
    const solo = latestConf.voters.length === 1 && latestConf.voters[0] === this.id;
    this.startupIndex = solo ? this.storage.lastIndex() : Math.max(this.appliedIndex, loaded.hardState?.commit ?? 0);
    this.onAddresses(this.addresses);
    const tick = setInterval(() => {
      this.raft.tick();
      if (!this.stepping && this.stepsRun === this.stepsRunAtTick && this.storage.hasClearing()) this.idleClearing = true;
      this.stepsRunAtTick = this.stepsRun;
      this.kick();
    }, options.tickMs ?? 20);
    const housekeeping = setInterval(() => {
      this.housekeep();
      this.snapshotForDeletes();
    }, options.housekeepingIntervalMs ?? 1000);
    for (const t of [tick, housekeeping]) {
      t.unref();
      this.timers.push(t);
    }
    this.kick();
  }

  /** Resolves once the node has applied what it knew to be committed when it started (a restart
   * replays its log here), so that it never answers from a state older than what it acknowledged. */
  caughtUp(): Promise<void> {
    if (this.appliedIndex >= this.startupIndex) return Promise.resolve();
    return new Promise((resolve) => this.caughtUpWaiters.push(resolve));
  }

  get applied(): number {
    return this.appliedIndex;
  }

  get commitIndex(): number {
    return this.raft.log.committed;
  }

  /** The last index in this node's log, committed or not. */
  get lastLogIndex(): number {
    return this.raft.log.lastIndex();
  }

  get term(): number {
    return this.raft.term;
  }

  get leaderId(): NodeId {
    return this.raft.leader;
  }

  get isLeader(): boolean {
    return this.raft.role === 'leader';
  }

  /** This node's view of the group, as `GET /v1/cluster` shows it. */
  clusterStatus() {
    const conf = this.raft.conf();
    const member = (id: NodeId, learner: boolean) => ({
      id: String(id),
      address: this.addresses.get(id) ?? 'local',
      role: learner ? 'learner' : id === this.raft.leader ? 'leader' : 'follower',
      matchIndex: this.raft.matchIndex(id),
    });
    return {
      nodeId: String(this.id),
      leaderId: this.raft.leader ? String(this.raft.leader) : null,
      term: this.raft.term,
      commitIndex: this.raft.log.committed,
      appliedIndex: this.appliedIndex,
      /** The log index of this node's latest snapshot (taken here or received from the leader). */
      snapshotIndex: this.snapshotIndex,
      members: [...conf.voters.map((id) => member(id, false)), ...conf.learners.map((id) => member(id, true))],
    };
  }

  /** Whether storage writes fail for lack of room now (the node retries them; see the top of this file). */
  get writeStalled(): boolean {
    return this.writeStall !== undefined;
  }

  /** What the metrics read when scraped: the data directory, the stored log's bounds, the writes waiting. */
  storageStatus() {
    return { dataDir: this.storage.dataDir, logFirstIndex: this.storage.firstIndex(), logLastIndex: this.storage.lastIndex(), proposalsWaiting: this.waiters.size };
  }

  /** A hash of the applied broker state (for comparing replicas in tests and checks). */
  stateDigest(): string {
    return createHash('sha256').update(encodeCommand(this.machine.snapshot())).digest('hex');
  }

  now(): number {
    return this.clock();
  }

  /** Effects of applied commands while this node leads (what only the leader carries out). */
  onEffects(listener: (effects: Effect[]) => void): void {
    this.effectListeners.push(listener);
  }

  /** Effects of applied commands on every node, whatever its role (e.g. `published`, for topic tails). */
  onAnyRoleEffects(listener: (effects: Effect[]) => void): void {
    this.anyRoleEffectListeners.push(listener);
  }

  /**
   * Publishes this leader has just put in its log (not yet committed). A consumer waiting for messages
   * may propose its pull at once, behind the publish: the two commit together, in one log round trip.
   */
  onPublishProposed(listener: PublishProposedListener): void {
    this.publishProposedListeners.push(listener);
  }

  /** Puts a command through the log; resolves with the machine's reply once it is committed and applied. */
  propose(command: Command): Promise<Reply> {
    if (this.closed) return Promise.reject(new NodeUnavailableError('node is shutting down'));
    if (this.failure) return Promise.reject(new NodeUnavailableError('node storage failed'));
    if (this.waiters.size >= limits.proposalsQueuedMax) {
      return Promise.reject(new NodeUnavailableError('too many writes waiting for the log'));
    }
    const stamped: StampedCommand = { nowMs: this.clock(), command };
    const data = encodeStamped(stamped);
    const r = this.raft.propose(data);
    if (!r.ok) return Promise.reject(new NotLeaderError(r.leaderHint));
    this.proposed.set(r.index, { term: r.term, stamped });
    this.logBytesSinceSnapshot += data.length;
    const applied = this.awaitApplied(r.index, r.term);
    if (command.type === 'publish' && this.publishProposedListeners.length > 0) {
      // In a microtask: a listener's own proposal still joins this turn's log write, behind this one.
      queueMicrotask(() => {
        for (const l of this.publishProposedListeners) l(command.topic, command.messages, stamped.nowMs);
      });
    }
    return applied;
  }

  /** Resolves with the reply when the entry proposed at `index` in `term` is applied. */
  private awaitApplied(index: number, term: number): Promise<Reply> {
    const promise = new Promise<Reply>((resolve, reject) => this.waiters.set(index, { term, resolve, reject }));
    this.kick();
    return promise;
  }

  /** A frame from a peer: a Raft message, or a chunk of a snapshot the leader streams to us. */
  receive(message: PeerFrame): void {
    if (message.type === 'snapshot-chunk') return this.receiveChunk(message);
    if (message.type === 'snapshot') {
      // The core gets the snapshot only once every chunk before it has arrived, in order.
      const marker = message.data as { chunks?: number } | undefined;
      const inc = this.incoming;
      if (!inc || inc.from !== message.from || inc.index !== message.snapshot.index || marker?.chunks !== inc.next) {
        this.incoming = null;
        return;
      }
      this.incoming = null;
      const received: ReceivedSnapshot = { state: inc.state as ReceivedSnapshot['state'], records: inc.records };
      message = { ...message, data: received };
    }
    this.raft.step(message);
    // A follower's acknowledgement may commit entries: answer their proposers now rather than after
    // the write this node has in progress.
    if (message.type === 'append-response' && !this.failure) for (const entry of this.raft.takeCommitted()) this.applyEntry(entry);
    this.kick();
  }

  private kick(): void {
    if (this.stepping && !this.failure) this.scheduleLeaderSends();
    if (this.stepping || this.failure || (!this.raft.hasReady() && !this.storage.hasPendingWrites() && !this.snapshotWanted && !this.idleClearing)) return;
    this.stepping = true;
    // setImmediate lets the proposals of this I/O turn join the same step.
    setImmediate(() => {
      this.run().catch((error: Error) => this.fail(error));
    });
  }

  /**
   * While a write is in progress, a leader sends what was proposed meanwhile at once instead of after
   * that write: a proposal's round trip to the followers then overlaps the leader's own fsync.
   */
  private scheduleLeaderSends(): void {
    if (this.leaderSendsScheduled || this.raft.role !== 'leader') return;
    this.leaderSendsScheduled = true;
    // setImmediate lets the proposals of this I/O turn join one append.
    setImmediate(() => {
      this.leaderSendsScheduled = false;
      if (!this.stepping || this.failure) return; // the next step sends them itself
      const sends = this.raft.takeLeaderSends();
      if (sends.length > 0) this.send(sends);
    });
  }

  private async run(): Promise<void> {
    while (!this.failure && (this.raft.hasReady() || this.storage.hasPendingWrites() || this.snapshotWanted || this.idleClearing)) {
      const ready = this.raft.ready();
      let install: { meta: SnapshotMeta; received: ReceivedSnapshot } | undefined;
      if (ready.snapshot) {
        // A leader's snapshot: this node's state becomes the snapshot's.
        const received = ready.snapshot.data as ReceivedSnapshot;
        install = { meta: ready.snapshot.meta, received };
        this.machine.restore(received.state);
        this.appliedIndex = this.snapshotIndex = ready.snapshot.meta.index;
        for (const index of [...this.proposed.keys()]) if (index <= this.appliedIndex) this.proposed.delete(index);
        for (const [id, a] of Object.entries(ready.snapshot.meta.addresses ?? {})) this.addresses.set(Number(id), a);
        this.onAddresses(this.addresses);
        noteSnapshot('installed');
      }
      for (const entry of ready.committed) this.applyEntry(entry);
      // A node that votes alone need not wait out an election timeout.
      const conf = this.raft.conf();
      if (this.raft.role !== 'leader' && conf.voters.length === 1 && conf.voters[0] === this.id) this.raft.campaign(false);
      // A leader's appends and heartbeats go out before its own write: followers write in parallel
      // with it, and the leader counts itself only once its write is done (Raft §10.2.1). Everything
      // else (votes, acknowledgements) waits until what it promises is durable.
      const messages = ready.messages ?? [];
      const early = this.raft.role === 'leader' ? messages.filter((m) => m.type === 'append' || m.type === 'heartbeat') : [];
      if (early.length > 0) this.send(early);
      const stepStartedMs = performance.now();
      const idle = this.idleClearing && ready.entries.length === 0 && ready.committed.length === 0 && messages.length === 0;
      const write: StepWrite = { entries: ready.entries, hardState: ready.hardState, ...(install ? { install } : this.snapshotIfDue()), ...(idle ? { idle } : {}) };
      if (!(await this.persist(write))) {
        // Closed while the write waited for room: it never reached the disk, so nothing waiting on it
        // is answered from here (on a group, a majority of followers may still commit some of it, as
        // after any leader's stop).
        for (const w of this.waiters.values()) w.reject(new NodeUnavailableError('node is shutting down; its last write found no room on disk'));
        this.waiters.clear();
        break;
      }
      noteAppend(stepStartedMs, ready.entries);
      this.stepsRun++;
      // Idle clearing goes on, one step after another, until something else comes (or it is done).
      if (this.idleClearing && (this.raft.hasReady() || !this.storage.hasClearing())) this.idleClearing = false;
      const late = early.length > 0 ? messages.filter((m) => m.type !== 'append' && m.type !== 'heartbeat') : messages;
      if (late.length > 0) this.send(this.streamSnapshotsAside(late));
      this.raft.advance(ready);
      if (ready.softState && ready.softState.role !== 'leader') this.failWaitersOnLostLeadership();
      if (ready.softState) noteLeader(ready.softState.leader);
      // A step that committed on this thread may have awaited no I/O (only a follower's large direct
      // append goes to the thread pool): let the event loop in before the next, so that what arrived
      // meanwhile joins it and a run of idle steps does not hold the loop.
      if (this.storage.commitsInline) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.stepping = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * Writes a step. One that finds no room is tried again, the same write, after a pause, until it
   * succeeds (true) or the node closes (false). `ready` is not asked again meanwhile: its committed
   * entries are applied, its early messages sent and its snapshot taken, and they must not be twice.
   */
  private async persist(write: StepWrite): Promise<boolean> {
    for (;;) {
      try {
        // A follower's appends go past the page cache, and it reads message data only on demand.
        const leader = this.raft.role === 'leader';
        this.storage.followerMode = !leader;
        // A leader with followers commits on their acknowledgements, not on its own sync: it keeps its
        // thread (a single node's commit waits for its sync, and a follower's acknowledgement does).
        this.storage.syncsInline = !leader || this.raft.conf().voters.length === 1;
        await this.storage.step(write);
      } catch (error) {
        if (!(error instanceof StorageFullError)) {
          noteStorageWriteFailure('other');
          throw error;
        }
        noteStorageWriteFailure(error.reason);
        const stall = (this.writeStall ??= { sinceMs: Date.now(), attempts: 0 });
        if (stall.attempts++ === 0) {
          console.warn(`herald: a storage write failed for lack of room (${error.message}); publishes are refused and the write is retried until there is room`);
          this.writeFailures?.noteWriteFailed(`a write to disk failed for lack of room (${error.reason})`);
        }
        const pauseMs = Math.min(this.writeRetry.maxMs, this.writeRetry.firstMs * 2 ** Math.min(stall.attempts - 1, 30));
        if (!(await this.pauseBeforeRetry(pauseMs))) return false;
        continue;
      }
      if (this.writeStall) {
        const { sinceMs, attempts } = this.writeStall;
        this.writeStall = undefined;
        console.warn(`herald: storage writes work again, after ${attempts} failed attempts over ${((Date.now() - sinceMs) / 1000).toFixed(1)} s`);
        this.writeFailures?.noteWriteSucceeded();
      }
      return true;
    }
  }

  /** Resolves true after `ms`, or false at once if the node closes meanwhile. */
  private pauseBeforeRetry(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.endWritePause = undefined;
        resolve(true);
      }, ms);
      timer.unref(); // a stop must not wait for it
      this.endWritePause = () => {
        clearTimeout(timer);
        this.endWritePause = undefined;
        resolve(false);
      };
    });
  }

  /** Takes snapshot messages out of a batch and streams each (the core leaves their data to the driver). */
  private streamSnapshotsAside(messages: Message[]): Message[] {
    if (!messages.some((m) => m.type === 'snapshot')) return messages;
    for (const m of messages) if (m.type === 'snapshot') void this.streamSnapshot(m);
    return messages.filter((m) => m.type !== 'snapshot');
  }

  /**
   * Streams the latest snapshot to a follower: chunk 0 carries the broker state, the next ones the
   * retained message bodies, each sent only once the connection has drained; then the Raft message.
   * Any failure abandons the stream and tells the core, which sends a snapshot again later.
   */
  private async streamSnapshot(m: Extract<Message, { type: 'snapshot' }>): Promise<void> {
    if (this.streaming.has(m.to)) return;
    this.streaming.add(m.to);
    try {
      const saved = this.storage.loadSnapshotState();
      if (!saved || saved.meta.index !== m.snapshot.index) throw new Error('the snapshot moved on');
      let seqNo = 0;
      const send = async (payload: Buffer) => {
        const chunk: SnapshotChunk = { type: 'snapshot-chunk', group: m.group, from: this.id, to: m.to, term: m.term, snapshotIndex: m.snapshot.index, seqNo: seqNo++, payload };
        if (!(await this.sendChunk(chunk))) throw new Error('the stream to the follower broke');
      };
      await send(encodeCommand({ state: saved.state }));
      let batch: [number, number, Buffer][] = [];
      let bytes = 0;
      for (const record of this.storage.snapshotRecords(saved.state)) {
        batch.push(record);
        bytes += record[2].length;
        if (bytes >= this.snapshotChunkBytes) {
          await send(encodeCommand({ records: batch }));
          batch = [];
          bytes = 0;
        }
      }
      if (batch.length > 0) await send(encodeCommand({ records: batch }));
      this.send([{ ...m, data: { chunks: seqNo } }]);
      noteSnapshot('sent');
    } catch (error) {
      console.warn(`herald: snapshot to node ${m.to} abandoned: ${(error as Error).message}`);
      this.raft.reportSnapshotFailed(m.to);
      this.kick();
    } finally {
      this.streaming.delete(m.to);
    }
  }

  private receiveChunk(c: SnapshotChunk): void {
    try {
      if (c.seqNo === 0) {
        const { state } = decodeCommand<{ state: unknown }>(c.payload);
        this.incoming = { from: c.from, index: c.snapshotIndex, next: 1, state, records: new LocatedRecords() };
        return;
      }
      const inc = this.incoming;
      if (!inc || inc.from !== c.from || inc.index !== c.snapshotIndex || inc.next !== c.seqNo) {
        this.incoming = null; // a gap: this stream is lost; the leader will send a snapshot again
        return;
      }
      const { records } = decodeCommand<{ records: [number, number, Uint8Array][] }>(c.payload);
      this.storage.appendReceived(inc.records, records);
      inc.next++;
    } catch (error) {
      console.warn(`herald: bad snapshot chunk from node ${c.from}: ${(error as Error).message}`);
      this.incoming = null;
    }
  }

  private snapshotIfDue() {
    const due =
      this.snapshotWanted ||
      this.appliedIndex - this.snapshotIndex >= this.snapshotEntriesInterval ||
      this.logBytesSinceSnapshot >= limits.snapshotLogBytesInterval;
    this.snapshotWanted = false;
    if (!due || this.appliedIndex === this.snapshotIndex) return {};
    const term = this.raft.log.term(this.appliedIndex);
    assert(term !== undefined, `no term for applied index ${this.appliedIndex}`);
    this.snapshotIndex = this.appliedIndex;
    this.lastSnapshotAtMs = Date.now();
    this.logBytesSinceSnapshot = 0;
    noteSnapshot('taken');
    return {
      snapshot: {
        meta: { index: this.appliedIndex, term, conf: this.raft.conf(), addresses: Object.fromEntries(this.addresses) },
        state: this.machine.snapshot(),
        // Keep some log behind the snapshot in a group, so a briefly lagging follower catches up from
        // the log rather than by a whole snapshot.
        compactTo: Math.max(0, this.appliedIndex - (this.raft.conf().voters.length > 1 ? Math.min(5000, Math.floor(this.snapshotEntriesInterval / 2)) : 0)),
      },
    };
  }

  private applyEntry(entry: Entry): void {
    assert(entry.index === this.appliedIndex + 1, `applying ${entry.index} after ${this.appliedIndex}`);
    const proposed = this.proposed.get(entry.index);
    this.proposed.delete(entry.index);
    const stamped = proposed && proposed.term === entry.term ? proposed.stamped : undefined;
    let reply: Reply | undefined;
    let effects: Effect[] = [];
    if (entry.type === EntryType.conf) {
      const cc = decodeConfChange(entry.data);
      this.raft.applyConfChange(cc);
      this.noteAddresses(cc);
      reply = { ok: true };
    } else if (entry.data.length > 0) {
      // A publish that storage keeps in a segment file is applied from the entry's bytes even here
      // where it was proposed: its messages' data are then views into the entry, and storage indexes
      // them where the entry is rather than writing every body a second time (lmdb-storage.ts).
      const fromBytes = !stamped || (stamped.command.type === 'publish' && entry.data.length >= entryInSegmentBytesMin);
      const command = fromBytes ? decodeStamped(entry.data) : stamped!;
      this.storage.applying(entry);
      let result: ReturnType<BrokerMachine['apply']>;
      try {
        result = this.machine.apply(command, entry.index);
      } finally {
        this.storage.applying(undefined);
      }
      reply = result.reply;
      effects = result.effects;
      noteApplied(command, reply, this);
    }
    this.appliedIndex = entry.index;
    if (this.caughtUpWaiters.length > 0 && this.appliedIndex >= this.startupIndex) for (const w of this.caughtUpWaiters.splice(0)) w();
    const waiter = this.waiters.get(entry.index);
    if (waiter) {
      this.waiters.delete(entry.index);
      // Another leader's entry took this index: the proposal was lost, not applied.
      if (waiter.term !== entry.term || reply === undefined) waiter.reject(new NotLeaderError(this.raft.leader));
      else waiter.resolve(reply);
    }
    if (effects.length > 0) {
      if (this.isLeader) for (const l of this.effectListeners) l(effects);
      for (const l of this.anyRoleEffectListeners) l(effects);
    }
  }

  /** Proposals beyond the commit index may never commit once this node stops leading. */
  private failWaitersOnLostLeadership(): void {
    for (const [index, w] of this.waiters) {
      if (index > this.raft.log.committed) {
        this.waiters.delete(index);
        this.proposed.delete(index);
        w.reject(new NotLeaderError(this.raft.leader));
      }
    }
  }

  private noteAddresses(cc: ConfChange): void {
    if (cc.type === 'add-learner' && cc.address) this.addresses.set(cc.node, cc.address);
    else if (cc.type === 'remove') this.addresses.delete(cc.node);
    else return;
    this.onAddresses(this.addresses);
  }

  // ---- membership (on the leader) ----

  private async proposeConf(cc: ConfChange): Promise<void> {
    const r = this.raft.proposeConfChange(cc);
    if (!r.ok) {
      if (r.reason === 'invalid-conf-change') throw new MembershipError(`that change does not fit the membership ${JSON.stringify(this.raft.conf())}`);
      if (r.reason === 'conf-change-pending') throw new NodeUnavailableError('another membership change is in progress');
      throw new NotLeaderError(r.leaderHint);
    }
    await this.awaitApplied(r.index, r.term);
  }

  /** Adds a node: as a learner first; once it has caught up (by log or snapshot), as a voter. */
  async addMember(id: NodeId, address: string, catchUpTimeoutMs = 120_000): Promise<void> {
    await this.proposeConf({ type: 'add-learner', node: id, address });
    const deadline = Date.now() + catchUpTimeoutMs;
    for (;;) {
      if (!this.isLeader) throw new NotLeaderError(this.raft.leader);
      if (this.raft.matchIndex(id) >= this.raft.log.committed) break;
      if (Date.now() > deadline) throw new NodeUnavailableError(`node ${id} did not catch up in time; it stays a learner`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.proposeConf({ type: 'promote', node: id });
  }

  async removeMember(id: NodeId): Promise<void> {
    await this.proposeConf({ type: 'remove', node: id });
  }

  /** Hands leadership to `to` and waits until it leads (or the transfer times out). */
  async transferLeadership(to: NodeId, timeoutMs = 10_000): Promise<void> {
    if (!this.raft.transferLeadership(to)) {
      if (this.raft.role !== 'leader') throw new NotLeaderError(this.raft.leader);
      throw new MembershipError(`node ${to} is not a voter`);
    }
    this.kick();
    const deadline = Date.now() + timeoutMs;
    while (this.raft.leader !== to) {
      if (Date.now() > deadline) throw new NodeUnavailableError(`node ${to} did not take over in time`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Before a planned stop: if this node leads a group with other voters, hands leadership to the one
   * that has the most of the log, so the group does not wait out an election timeout. Best effort.
   */
  async handOver(timeoutMs = 3000): Promise<void> {
    if (!this.isLeader || this.closed || this.failure) return;
    const others = this.raft.conf().voters.filter((id) => id !== this.id);
    if (others.length === 0) return;
    const to = others.reduce((best, id) => (this.raft.matchIndex(id) > this.raft.matchIndex(best) ? id : best));
    await this.transferLeadership(to, timeoutMs).catch(() => {});
  }

  /**
   * Removals reach the disk only with a snapshot that covers them (see lmdb-storage.ts). When some
   * wait and no snapshot has been taken for a while, take one (on every node, whatever its role), so
   * the space retention or a deleted topic frees comes back within seconds rather than after the
   * next 20,000 entries.
   */
  private snapshotForDeletes(): void {
    if (this.closed || this.failure || this.snapshotWanted || !this.storage.hasDeferredDeletes()) return;
    if (this.appliedIndex === this.snapshotIndex || Date.now() - this.lastSnapshotAtMs < deletesSnapshotDelayMs) return;
    this.snapshotWanted = true;
    this.kick();
  }

  private housekeep(): void {
    if (this.closed || this.failure || !this.isLeader) return;
    if (this.machine.expireDue(this.clock())) {
      this.propose({ type: 'expire' }).catch(() => {});
    }
  }

  private fail(error: Error): void {
    // A failed durable write leaves the log in doubt; refuse everything rather than guess.
    this.failure = error;
    this.stepping = false;
    for (const w of this.waiters.values()) w.reject(new NodeUnavailableError(`storage failed: ${error.message}`));
    this.waiters.clear();
    for (const w of this.idleWaiters.splice(0)) w();
    console.error('herald: storage step failed', error);
  }

  /** Stops taking proposals, lets the outstanding step finish (one waiting for room is given up), closes storage. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.endWritePause?.();
    if (this.stepping) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.storage.close();
  }
}
