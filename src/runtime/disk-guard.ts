/**
 * Admission control for storage: once a second, looks at the data directory's filesystem (free bytes)
 * and at the message bodies Herald holds there (segment files, by blocks allocated; the LMDB file
 * holds the log, bounded by compaction, and the index, and reuses its freed pages without shrinking,
 * so it is left out of the quota and covered by the reserve). When free space falls under the
 * reserve, or the bodies go over the quota, the node is "full":
 * publishes are refused with 503 `Unavailable` (Retry-After) while everything stored stays readable
 * and deliverable, and pulls, acks and deletes — which need little room and free some — go on. Once
 * space returns (retention, deleted topics, an operator), publishing resumes by itself.
 *
 * A write can still fail for lack of room between two checks (a burst, another process filling the
 * disk, a reserve of 0). The driver then retries it and tells the guard (`noteWriteFailed`), which
 * holds the node full until a write succeeds again and a check finds room. Meanwhile everything that
 * needs this node's disk waits for that write, not only publishes (see runtime/herald-node.ts).
 */
import { filesystemSpace, segmentUsage } from '../storage/usage.js';
import type { WriteFailureListener } from './herald-node.js';

export interface DiskGuardOptions {
  /** Free bytes the filesystem must keep. */
  reserveBytes: number;
  /** Bytes of message bodies (segment files) Herald may keep (undefined: no quota). */
  maxBytes?: number;
  checkIntervalMs?: number;
}

export class DiskGuard implements WriteFailureListener {
  private fullReason: string | undefined;
  /** Why the last write failed, while it has not succeeded since. */
  private writeFailure: string | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly dataDir: string,
    private readonly options: DiskGuardOptions,
  ) {
    this.check();
    this.timer = setInterval(() => this.check(), options.checkIntervalMs ?? 1000);
    this.timer.unref();
  }

  /** Why publishing is refused now; undefined when there is room. */
  get full(): string | undefined {
    return this.writeFailure ?? this.fullReason;
  }

  noteWriteFailed(reason: string): void {
    this.writeFailure = reason;
  }

  noteWriteSucceeded(): void {
    this.writeFailure = undefined;
    this.check();
  }

  check(): void {
    const space = filesystemSpace(this.dataDir);
    // Cannot tell: do not refuse writes on a guess.
    if (!space) return void (this.fullReason = undefined);
    const used = segmentUsage(this.dataDir).allocatedBytes;
    if (space.availBytes < this.options.reserveBytes) {
      this.fullReason = `the disk has ${mib(space.availBytes)} free, under the ${mib(this.options.reserveBytes)} reserve`;
    } else if (this.options.maxBytes !== undefined && used > this.options.maxBytes) {
      this.fullReason = `message bodies take ${mib(used)}, over --storage-max-bytes ${mib(this.options.maxBytes)}`;
    } else {
      this.fullReason = undefined;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
