// Goal: acked records do not pile up in a subscription's heap. Entries are dropped lazily, so without
// compaction a consumer acking fast under a long lease kept an entry per delivery until its lease
// would have run out: millions in a drain, and GC over them made every delivery dearer. The heap must
// stay within twice the live records plus a fixed slack, and still hand out records in (time, seq)
// order. Method: SubscriptionState driven as the machine drives it: records added and leased
// (rescheduled to their deadline), most acked (removed), some left to expire.
import { expect, test } from 'vitest';
import { SubscriptionState, type PendingRecord } from '../../../src/core/broker/subscription.js';
import { subConfig } from './harness.js';

test('the heap stays bounded while records are leased and acked, and due records still come in order', () => {
  const s = new SubscriptionState(1, 's', subConfig('t'), 1, 1);
  const leaseMs = 30_000;
  let now = 1_000_000;
  let maxHeap = 0;
  const kept: PendingRecord[] = [];
  for (let seq = 1; seq <= 200_000; seq++) {
    const r: PendingRecord = { seq, attempt: 0, availableAtMs: now, leaseToken: 0, blocked: false };
    s.addRecord(r, false);
    r.attempt = 1;
    r.leaseToken = seq;
    s.reschedule(r, now + leaseMs); // leased
    if (seq % 1000 === 0) kept.push(r); // never acked: their leases run out
    else s.removeRecord(r); // acked
    maxHeap = Math.max(maxHeap, s.heap.size);
    if (seq % 100 === 0) now += 1;
  }
  expect(s.pending.size).toBe(200);
  expect(maxHeap).toBeLessThanOrEqual(2 * 200 + 1024 + 1);

  // Every kept record comes due at its lease deadline, in (time, seq) order, and nothing else does.
  const due: number[] = [];
  for (let r = s.popDue(now + leaseMs); r; r = s.popDue(now + leaseMs)) {
    due.push(r.seq);
    s.removeRecord(r);
  }
  expect(due).toEqual(kept.map((r) => r.seq));
  expect(s.nextAvailableAtMs()).toBeUndefined();
});
