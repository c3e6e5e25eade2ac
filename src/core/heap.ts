/** A binary min-heap of (time, seq) pairs, ordered by time then seq. Entries may go stale; the owner
 * checks each popped entry against its records (lazy deletion), which keeps updates O(log n). */
export interface TimedSeq {
  timeMs: number;
  seq: number;
}

export class TimedSeqHeap {
  private items: TimedSeq[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): TimedSeq | undefined {
    return this.items[0];
  }

  clear(): void {
    this.items = [];
  }

  /** Replaces the contents with `entries` (heapified in O(n)). */
  rebuild(entries: TimedSeq[]): void {
    const items = (this.items = entries);
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  push(timeMs: number, seq: number): void {
    const items = this.items;
    items.push({ timeMs, seq });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(items[i]!, items[parent]!)) break;
      swap(items, i, parent);
      i = parent;
    }
  }

  pop(): TimedSeq | undefined {
    const items = this.items;
    if (items.length === 0) return undefined;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private siftDown(i: number): void {
    const items = this.items;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < items.length && less(items[l]!, items[m]!)) m = l;
      if (r < items.length && less(items[r]!, items[m]!)) m = r;
      if (m === i) break;
      swap(items, i, m);
      i = m;
    }
  }
}

function less(a: TimedSeq, b: TimedSeq): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
}

/** Not a destructuring swap: that allocates an array per swap until V8 optimizes the function, and
 * the heap of a busy subscription swaps a dozen times per lease (6% of a leader's allocated bytes). */
function swap(items: TimedSeq[], i: number, j: number): void {
  const t = items[i]!;
  items[i] = items[j]!;
  items[j] = t;
}
