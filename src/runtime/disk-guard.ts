/**
 * Admission control for storage: once a second, looks at the data directory's filesystem (free bytes)
 * and at the message bodies Herald holds there (segment files, by blocks allocated; the LMDB file
 * holds the log, bounded by compaction, and the index, and reuses its freed pages without shrinking,
 * so it is left out of the quota and covered by the reserve). When free space falls under the
 * reserve, or the bodies go over the quota, the node is "full":
 * publishes are refused with 503 `Unavailable` (Retry-After) while everything stored stays readable
 * and deliverable, and pulls, acks and deletes — which need little room and free some — go on. Once
 * space returns (retention, deleted topics, an operator), publishing resumes by itself.
 */
import { filesystemSpace, segmentUsage } from '../storage/usage.js';

export interface DiskGuardOptions {
  /** Free bytes the filesystem must keep. */
  reserveBytes: number;
  /** Bytes of message bodies (segment files) Herald may keep (undefined: no quota). */
  maxBytes?: number;
  checkIntervalMs?: number;
}

export class DiskGuard {
  private fullReason: string | undefined;
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
    return this.fullReason;
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
