// Goal: a Raft message reaches the peer exactly as sent, whichever way it was framed, and a malformed
// frame is refused (FrameError), never misread. Appends go out in parts that share the entries' data
// with the Raft log (no copy); written back to back they must be byte for byte the one-buffer frame.
// Method: fast-check over every message kind, entry sizes on both sides of the inline threshold.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Message } from '../../src/core/raft/messages.js';
import { decodeFrame, decodeMessage, encodeMessage, encodeMessageParts, FrameError, inlineEntryBytesMax } from '../../src/transport/peer-codec.js';

const id = fc.integer({ min: 1, max: 2 ** 31 });
const index = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const envelope = { group: fc.integer({ min: 0, max: 1000 }), from: id, to: id, term: index };
const entryData = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.integer({ min: inlineEntryBytesMax - 2, max: inlineEntryBytesMax + 2 }).map((n) => new Uint8Array(n).fill(n & 0xff)),
  fc.integer({ min: 2000, max: 40_000 }).map((n) => Buffer.alloc(n, n & 0xff)),
);
const entry = fc.record({ index, term: index, type: fc.constantFrom(0, 1), data: entryData });
const append = fc.record({
  ...envelope,
  type: fc.constant('append' as const),
  prevIndex: index,
  prevTerm: index,
  commit: index,
  entries: fc.array(entry, { maxLength: 12 }),
});
const message: fc.Arbitrary<Message> = fc.oneof(
  append,
  fc.record({ ...envelope, type: fc.constant('vote' as const), pre: fc.boolean(), transfer: fc.boolean(), lastIndex: index, lastTerm: index }),
  fc.record({ ...envelope, type: fc.constant('vote-response' as const), pre: fc.boolean(), granted: fc.boolean() }),
  fc.record({ ...envelope, type: fc.constant('append-response' as const), index, reject: fc.boolean(), hintIndex: index }),
  fc.record({ ...envelope, type: fc.constant('heartbeat' as const), commit: index, context: index }),
  fc.record({ ...envelope, type: fc.constant('heartbeat-response' as const), context: index }),
  fc.record({ ...envelope, type: fc.constant('timeout-now' as const) }),
);

/** What a receiver compares: entry data as plain bytes. */
function plain(m: Message): unknown {
  if (m.type !== 'append') return m;
  return { ...m, entries: m.entries.map((e) => ({ ...e, data: [...e.data] })) };
}

function joined(parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

describe('peer codec', () => {
  test('every message decodes to what was encoded, framed in one buffer or in parts', () => {
    fc.assert(
      fc.property(message, (m) => {
        const whole = encodeMessage(m);
        expect(whole.readUInt32BE(0)).toBe(whole.length - 4);
        expect(plain(decodeMessage(whole.subarray(4)))).toEqual(plain(m));
        // The parts written back to back are the same frame, byte for byte.
        expect(joined(encodeMessageParts(m)).equals(whole)).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  test("an append's large entries go out as the very buffers the log holds; small ones are copied in", () => {
    const big = Buffer.alloc(5000, 7);
    const small = Buffer.alloc(10, 3);
    const m: Message = {
      type: 'append',
      group: 0,
      from: 1,
      to: 2,
      term: 3,
      prevIndex: 4,
      prevTerm: 3,
      commit: 4,
      entries: [
        { index: 5, term: 3, type: 0, data: small },
        { index: 6, term: 3, type: 0, data: big },
        { index: 7, term: 3, type: 0, data: small },
      ],
    };
    const parts = encodeMessageParts(m);
    expect(parts).toHaveLength(3); // header and entries 5–6's heads, 6's data, entry 7
    expect(parts[1]).toBe(big);
    expect(parts.some((p) => p === small)).toBe(false);
    // The same entries to another follower share the data buffers too.
    expect(encodeMessageParts({ ...m, to: 3 })[1]).toBe(big);
    expect(plain(decodeMessage(joined(parts).subarray(4)))).toEqual(plain(m));
  });

  test('a frame cut short anywhere, or with bytes after its end, is refused', () => {
    fc.assert(
      fc.property(message, fc.nat(), (m, cut) => {
        const body = encodeMessage(m).subarray(4);
        const short = body.subarray(0, cut % body.length);
        expect(() => decodeFrame(short)).toThrow(FrameError);
        expect(() => decodeFrame(Buffer.concat([body, Buffer.from([0])]))).toThrow(FrameError);
      }),
      { numRuns: 300 },
    );
  });

  test('an unknown kind or entry type is refused', () => {
    expect(() => decodeFrame(Buffer.from([200, 0, 0, 0, 0]))).toThrow(FrameError);
    const m: Message = { type: 'append', group: 0, from: 1, to: 2, term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries: [{ index: 1, term: 1, data: Buffer.from('x') }] };
    const body = Buffer.from(encodeMessage(m).subarray(4));
    body[1 + 12 + 8 + 24 + 4 + 16] = 9; // the entry's type byte
    expect(() => decodeFrame(body)).toThrow(/unknown entry type/);
  });
});
