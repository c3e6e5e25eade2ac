// Goal: a message's stored record keeps what rendering relies on — encoding and the jsonSafe mark —
// and a record written before the mark existed (flags byte 0 or 1) still reads as utf8 or base64
// without it. Method: encodeRecord/decodeRecord round trips, and hand-made old flag bytes.
import { expect, test } from 'vitest';
import type { StoredMessage } from '../../src/core/broker/types.js';
import { decodeRecord, encodeRecord } from '../../src/storage/segments.js';

const base: StoredMessage = { seq: 7, publishTimeMs: 1_000, visibleAtMs: 2_000, encoding: 'utf8', data: Buffer.from('hello') };

test('encoding and jsonSafe survive a round trip, with and without meta', () => {
  for (const m of [
    base,
    { ...base, jsonSafe: true as const },
    { ...base, encoding: 'base64' as const, data: Buffer.from([0, 255, 34]) },
    { ...base, jsonSafe: true as const, tags: ['a'], attributes: { k: 'v' }, routingKey: 'x.y', orderingKey: 'o' },
  ]) {
    expect(decodeRecord(m.seq, Buffer.concat(encodeRecord(m)))).toEqual(m);
  }
});

test('a record from before the jsonSafe mark reads without it', () => {
  for (const [flags, encoding] of [
    [0, 'utf8'],
    [1, 'base64'],
  ] as const) {
    const record = Buffer.concat(encodeRecord(base));
    record[16] = flags;
    const m = decodeRecord(7, record);
    expect(m.encoding).toBe(encoding);
    expect(m.jsonSafe).toBeUndefined();
  }
});
