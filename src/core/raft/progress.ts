/**
 * The leader's view of one follower (etcd's tracker.Progress):
 *
 *   probe ──(append accepted)──▶ replicate ──(reject)──▶ probe
 *     │                                                   ▲
 *     └──(needs entries compacted away)──▶ snapshot ──(snapshot applied)──┘
 *
 * probe: one append at a time until the follower answers, to find where the logs agree.
 * replicate: appends are pipelined, at most `inflightMax` unanswered.
 * snapshot: nothing is sent until the snapshot is in.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** probe: an append is out and unanswered. */
  probeSent = false;
  pendingSnapshot = 0;
  /** Ticks spent in the snapshot state: the follower's ack may be lost, so the leader probes again. */
  snapshotTicks = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** Last index of each unanswered append, oldest first (replicate state). */
  private inflights: number[] = [];

  constructor(
    next: number,
    readonly inflightMax: number,
    public isLearner: boolean,
  ) {
    this.next = next;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.length >= this.inflightMax;
      case 'snapshot':
        return true;
    }
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
      this.pendingSnapshot = 0;
    } else {
      this.next = this.match + 1;
    }
    this.state = 'probe';
    this.probeSent = false;
    this.inflights = [];
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.probeSent = false;
    this.inflights = [];
  }

  becomeSnapshot(index: number): void {
    this.state = 'snapshot';
    this.snapshotTicks = 0;
    this.pendingSnapshot = index;
    this.probeSent = false;
    this.inflights = [];
  }

  /** Records that an append ending at `lastIndex` went out. */
  sentAppend(lastIndex: number, entryCount: number): void {
    if (this.state === 'replicate') {
      if (entryCount > 0) {
        this.next = lastIndex + 1;
        this.inflights.push(lastIndex);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /** An accepted append up to `index`. False when it tells nothing new. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    let drop = 0;
    while (drop < this.inflights.length && this.inflights[drop]! <= index) drop++;
    if (drop > 0) this.inflights.splice(0, drop);
    return updated;
  }

  /** A rejected append at `rejected`; the follower's last index is `hint`. False when stale. */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** A heartbeat answered: a probe may go again, and a full pipeline frees a slot so appends resume
   * (the appends in flight may all have been lost; a gap makes the follower reject, and we probe). */
  heartbeatAnswered(): void {
    this.probeSent = false;
    if (this.state === 'replicate' && this.inflights.length >= this.inflightMax) this.inflights.shift();
  }
}
