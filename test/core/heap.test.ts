/**
 * Goal: TimedSeqHeap always yields the smallest (time, seq) pair first, like a sorted list would,
 * including with duplicate entries (the broker relies on lazy deletion, so duplicates are normal).
 * Method: fast-check against a "dumb" model: an array sorted on every step.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TimedSeqHeap, type TimedSeq } from '../../src/core/heap.js';

const byTimeThenSeq = (a: TimedSeq, b: TimedSeq) => a.timeMs - b.timeMs || a.seq - b.seq;

describe('TimedSeqHeap', () => {
  it('starts empty', () => {
    const h = new TimedSeqHeap();
    expect(h.size).toBe(0);
    expect(h.peek()).toBeUndefined();
    expect(h.pop()).toBeUndefined();
  });

  it('pops everything in (time, seq) order, as sorting would', () => {
    const entry = fc.record({ timeMs: fc.integer({ min: 0, max: 50 }), seq: fc.integer({ min: 0, max: 50 }) });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 300, size: 'max' }), (entries) => {
        const h = new TimedSeqHeap();
        for (const e of entries) h.push(e.timeMs, e.seq);
        expect(h.size).toBe(entries.length);
        const out: TimedSeq[] = [];
        for (let e = h.pop(); e; e = h.pop()) out.push(e);
        expect(out).toEqual([...entries].sort(byTimeThenSeq));
        expect(h.size).toBe(0);
      }),
    );
  });

  it('interleaved push, pop, peek and clear agree with a sorted-array model', () => {
    const op = fc.oneof(
      { weight: 12, arbitrary: fc.record({ kind: fc.constant('push' as const), timeMs: fc.integer({ min: 0, max: 20 }), seq: fc.integer({ min: 0, max: 20 }) }) },
      { weight: 8, arbitrary: fc.record({ kind: fc.constant('pop' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400, size: 'max' }), (ops) => {
        const h = new TimedSeqHeap();
        let model: TimedSeq[] = [];
        for (const o of ops) {
          if (o.kind === 'push') {
            h.push(o.timeMs, o.seq);
            model.push({ timeMs: o.timeMs, seq: o.seq });
            model.sort(byTimeThenSeq);
          } else if (o.kind === 'pop') {
            expect(h.pop()).toEqual(model.shift());
          } else {
            h.clear();
            model = [];
          }
          expect(h.size).toBe(model.length);
          expect(h.peek()).toEqual(model[0]);
        }
      }),
    );
  });

  it('rebuild heapifies any array: pops come out sorted, and pushes after it keep the order', () => {
    const entry = fc.record({ timeMs: fc.integer({ min: 0, max: 50 }), seq: fc.integer({ min: 0, max: 50 }) });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 300 }), fc.array(entry, { maxLength: 50 }), (entries, more) => {
        const h = new TimedSeqHeap();
        h.push(99, 99); // replaced by the rebuild
        h.rebuild(entries.map((e) => ({ ...e })));
        for (const e of more) h.push(e.timeMs, e.seq);
        const out: TimedSeq[] = [];
        for (let e = h.pop(); e; e = h.pop()) out.push(e);
        expect(out).toEqual([...entries, ...more].sort(byTimeThenSeq));
      }),
    );
  });
});
