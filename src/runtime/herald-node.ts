/**
 * The driver of one node: the single loop that takes proposals to the Raft core, persists what the
 * core hands out (one LMDB transaction and one fsync per step, shared by every proposal that arrived
 * meanwhile: group commit), applies committed entries to the broker state machine, answers the
 * proposers and passes the machine's effects on. Time enters here and only here (`clock`), stamped
 * into each command.
 */
import { assert } from '../core/assert.js';
import { limits } from '../core/limits.js';
import { BrokerMachine, type Effect, type Reply } from '../core/broker/machine.js';
import type { Command, StampedCommand } from '../core/broker/commands.js';
import { SoloRaft } from '../core/raft/solo.js';
import type { Entry } from '../core/raft/types.js';
import { decodeCommand, encodeCommand, LmdbStorage } from '../storage/lmdb-storage.js';

export class NodeUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeUnavailableError';
  }
}

interface Waiter {
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
}

export interface HeraldNodeOptions {
  dataDir: string;
  clock?: () => number;
  /** Retention and housekeeping check period. */
  housekeepingIntervalMs?: number;
  /** Entries between broker snapshots (default limits.snapshotEntriesInterval). */
  snapshotEntriesInterval?: number;
}

export class HeraldNode {
  readonly machine: BrokerMachine;
  private readonly storage: LmdbStorage;
  private readonly raft: SoloRaft;
  private readonly clock: () => number;
  /** Proposers waiting for their entry to be applied, by log index. */
  private readonly waiters = new Map<number, Waiter>();
  /** Commands proposed here, kept decoded so applying them does not decode them again. */
  private readonly proposed = new Map<number, StampedCommand>();
  private readonly effectListeners: ((effects: Effect[]) => void)[] = [];
  private stepping = false;
  private closed = false;
  private appliedIndex = 0;
  private snapshotIndex = 0;
  private logBytesSinceSnapshot = 0;
  private housekeeping: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  private failure: Error | null = null;
  private readonly snapshotEntriesInterval: number;

  constructor(options: HeraldNodeOptions) {
    this.clock = options.clock ?? Date.now;
    this.snapshotEntriesInterval = options.snapshotEntriesInterval ?? limits.snapshotEntriesInterval;
    this.storage = new LmdbStorage(options.dataDir);
    this.machine = new BrokerMachine(this.storage);
    const loaded = this.storage.load();
    if (loaded.snapshot) {
      this.machine.restore(loaded.snapshot.state);
      this.appliedIndex = this.snapshotIndex = loaded.snapshot.index;
    }
    // Every entry in a solo node's log was committed when it was persisted: replay them all.
    for (const entry of this.storage.entriesAfter(this.appliedIndex)) this.applyEntry(entry);
    assert(this.appliedIndex === loaded.lastIndex, `replay stopped at ${this.appliedIndex}, log ends at ${loaded.lastIndex}`);
    this.raft = new SoloRaft({ lastIndex: loaded.lastIndex, hardState: loaded.hardState });
    this.housekeeping = setInterval(() => this.housekeep(), options.housekeepingIntervalMs ?? 1000);
    this.housekeeping.unref();
    this.kick();
  }

  get applied(): number {
    return this.appliedIndex;
  }

  get commitIndex(): number {
    return this.raft.commit;
  }

  get term(): number {
    return this.raft.currentTerm;
  }

  now(): number {
    return this.clock();
  }

  onEffects(listener: (effects: Effect[]) => void): void {
    this.effectListeners.push(listener);
  }

  /** Puts a command through the log; resolves with the machine's reply once it is committed and applied. */
  propose(command: Command): Promise<Reply> {
    if (this.closed) return Promise.reject(new NodeUnavailableError('node is shutting down'));
    if (this.failure) return Promise.reject(new NodeUnavailableError('node storage failed'));
    if (this.waiters.size >= limits.proposalsQueuedMax) {
      return Promise.reject(new NodeUnavailableError('too many writes waiting for the log'));
    }
    const stamped: StampedCommand = { nowMs: this.clock(), command };
    const data = encodeCommand(stamped);
    const index = this.raft.propose(data);
    this.proposed.set(index, stamped);
    this.logBytesSinceSnapshot += data.length;
    const promise = new Promise<Reply>((resolve, reject) => this.waiters.set(index, { resolve, reject }));
    this.kick();
    return promise;
  }

  private kick(): void {
    if (this.stepping || this.failure) return;
    this.stepping = true;
    // setImmediate lets the proposals of this I/O turn join the same step.
    setImmediate(() => {
      this.run().catch((error: Error) => this.fail(error));
    });
  }

  private async run(): Promise<void> {
    while (this.raft.hasReady() || this.storage.hasPendingWrites()) {
      const ready = this.raft.ready();
      for (const entry of ready.committed) this.applyEntry(entry);
      const snapshotDue =
        this.appliedIndex - this.snapshotIndex >= this.snapshotEntriesInterval ||
        this.logBytesSinceSnapshot >= limits.snapshotLogBytesInterval;
      let snapshot;
      if (snapshotDue) {
        snapshot = { index: this.appliedIndex, state: this.machine.snapshot(), compactTo: this.appliedIndex };
        this.snapshotIndex = this.appliedIndex;
        this.logBytesSinceSnapshot = 0;
      }
      await this.storage.step({ entries: ready.entries, hardState: ready.hardState, ...(snapshot ? { snapshot } : {}) });
      this.raft.advance(ready);
    }
    this.stepping = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private applyEntry(entry: Entry): void {
    assert(entry.index === this.appliedIndex + 1, `applying ${entry.index} after ${this.appliedIndex}`);
    const stamped = this.proposed.get(entry.index) ?? decodeCommand<StampedCommand>(entry.data);
    this.proposed.delete(entry.index);
    const { reply, effects } = this.machine.apply(stamped, entry.index);
    this.appliedIndex = entry.index;
    const waiter = this.waiters.get(entry.index);
    if (waiter) {
      this.waiters.delete(entry.index);
      waiter.resolve(reply);
    }
    if (effects.length > 0) for (const l of this.effectListeners) l(effects);
  }

  private housekeep(): void {
    if (this.closed || this.failure) return;
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

  /** Stops taking proposals, lets the outstanding step finish, closes storage. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.housekeeping);
    if (this.stepping) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.storage.close();
  }
}
