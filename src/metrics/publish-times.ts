/**
 * When was seq N of a topic published? The publish-to-ack latency needs that for acked messages, and
 * reading each message back from storage would cost a segment read per ack. Instead every node notes,
 * as it applies a publish, the last seq of the batch and the batch's timestamp: a checkpoint. A seq's
 * publish time is that of the first checkpoint at or after it.
 *
 * Memory is bounded per topic (`checkpointsPerTopicMax`). When a topic's list is full, the older half
 * is thinned to every other checkpoint: recent messages keep the exact time of their batch, older
 * ones get a time at most one (growing) gap later than the truth, which is small next to their age.
 * Seqs from before the first checkpoint this process saw (published before its snapshot) are unknown.
 */

export const publishTimeLimits = {
  checkpointsPerTopicMax: 512,
  /** Topics followed at once; past it a new topic is not followed (its acks are not timed). */
  topicsMax: 10_000,
} as const;

class Checkpoints {
  /** The lowest seq the first checkpoint covers. */
  fromSeq: number;
  seqs = new Float64Array(16);
  times = new Float64Array(16);
  size = 0;

  constructor(fromSeq: number) {
    this.fromSeq = fromSeq;
  }

  add(lastSeq: number, timeMs: number): void {
    const n = this.size;
    if (n > 0 && this.times[n - 1] === timeMs) {
      // Batches stamped in the same millisecond share one checkpoint.
      this.seqs[n - 1] = lastSeq;
      return;
    }
    if (n === this.seqs.length) {
      if (n < publishTimeLimits.checkpointsPerTopicMax) this.grow();
      else this.thin();
    }
    this.seqs[this.size] = lastSeq;
    this.times[this.size] = timeMs;
    this.size++;
  }

  private grow(): void {
    const seqs = new Float64Array(this.seqs.length * 2);
    const times = new Float64Array(this.times.length * 2);
    seqs.set(this.seqs);
    times.set(this.times);
    this.seqs = seqs;
    this.times = times;
  }

  /** Keeps every other checkpoint of the older half (dropping the earlier of each pair). */
  private thin(): void {
    const half = this.size >> 1;
    let w = 0;
    for (let r = 1; r < half; r += 2) {
      this.seqs[w] = this.seqs[r]!;
      this.times[w] = this.times[r]!;
      w++;
    }
    for (let r = half; r < this.size; r++) {
      this.seqs[w] = this.seqs[r]!;
      this.times[w] = this.times[r]!;
      w++;
    }
    this.size = w;
  }

  timeOf(seq: number): number | undefined {
    if (seq < this.fromSeq || this.size === 0 || seq > this.seqs[this.size - 1]!) return undefined;
    let lo = 0;
    let hi = this.size - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[mid]! >= seq) hi = mid;
      else lo = mid + 1;
    }
    return this.times[lo];
  }
}

export class PublishTimes {
  private readonly topics = new Map<string, Checkpoints>();

  /** A publish batch was applied: its messages have seqs in [firstSeq, lastSeq] and time `timeMs`. */
  note(topic: string, firstSeq: number, lastSeq: number, timeMs: number): void {
    let c = this.topics.get(topic);
    // A topic deleted and created again starts its seqs over.
    if (c && c.size > 0 && lastSeq < c.seqs[c.size - 1]!) c = undefined;
    if (!c) {
      if (this.topics.size >= publishTimeLimits.topicsMax && !this.topics.has(topic)) return;
      this.topics.set(topic, (c = new Checkpoints(firstSeq)));
    }
    c.add(lastSeq, timeMs);
  }

  timeOf(topic: string, seq: number): number | undefined {
    return this.topics.get(topic)?.timeOf(seq);
  }

  /** Forgets topics that are gone. */
  retain(live: (topic: string) => boolean): void {
    for (const name of this.topics.keys()) if (!live(name)) this.topics.delete(name);
  }
}
