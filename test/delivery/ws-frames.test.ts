// Goal: the consumer socket's frame parser accepts exactly API.md's three client frames, with the
// HTTP routes' limits, and the batch sizer keeps a batch's bytes near the send-buffer limit.
// Method: direct calls, no server.
import { expect, test } from 'vitest';
import { parseClientFrame } from '../../src/delivery/ws-frames.js';
import { wsLimits } from '../../src/delivery/ws-limits.js';
import { BatchSizer } from '../../src/delivery/ws-socket.js';

const parse = (text: string) => parseClientFrame(Buffer.from(text), false);

test('the three frames, as API.md shows them', () => {
  expect(parse('{"type":"credit","n":100}')).toEqual({ ok: true, frame: { type: 'credit', n: 100 } });
  expect(parse('{"type":"ack","ackIds":["1.2","3.4"]}')).toEqual({ ok: true, frame: { type: 'ack', ackIds: ['1.2', '3.4'] } });
  expect(parse('{"type":"nack","ackIds":["1.2"],"delaySeconds":0}')).toEqual({ ok: true, frame: { type: 'nack', ackIds: ['1.2'], delaySeconds: 0 } });
  expect(parse('{"type":"nack","ackIds":["1.2"]}')).toEqual({ ok: true, frame: { type: 'nack', ackIds: ['1.2'], delaySeconds: undefined } });
});

test('limits: credits 1–10,000, 1–1000 ackIds of 1–256 characters, delaySeconds 0–43,200', () => {
  expect(parse(`{"type":"credit","n":${wsLimits.creditsOutstandingMax}}`).ok).toBe(true);
  expect(parse(`{"type":"credit","n":${wsLimits.creditsOutstandingMax + 1}}`).ok).toBe(false);
  expect(parse(JSON.stringify({ type: 'ack', ackIds: Array(1000).fill('x'.repeat(256)) })).ok).toBe(true);
  expect(parse(JSON.stringify({ type: 'ack', ackIds: Array(1001).fill('1.1') })).ok).toBe(false);
  expect(parse(JSON.stringify({ type: 'ack', ackIds: ['x'.repeat(257)] })).ok).toBe(false);
  expect(parse('{"type":"ack","ackIds":[""]}').ok).toBe(false);
  expect(parse('{"type":"nack","ackIds":["1.1"],"delaySeconds":43200}').ok).toBe(true);
  expect(parse('{"type":"nack","ackIds":["1.1"],"delaySeconds":43201}').ok).toBe(false);
  // The largest valid frame fits the frame limit.
  expect(JSON.stringify({ type: 'ack', ackIds: Array(1000).fill('x'.repeat(256)) }).length).toBeLessThan(wsLimits.clientFrameBytesMax);
});

test('anything else is refused with a message, never thrown', () => {
  for (const text of ['', 'null', '"credit"', '[]', '{}', '{"type":7}', '{"type":"credit"}', '{"type":"credit","n":"5"}', '{"type":"credit","n":2,"x":1}', '{"type":"ack"}', '{"type":"ack","ackIds":"1.1"}', '{"type":"nack","ackIds":["1"],"delaySeconds":1.5}', '{"type":"pull","max":5}']) {
    const r = parse(text);
    expect(r.ok, text).toBe(false);
    if (!r.ok) expect(r.message.length).toBeGreaterThan(0);
  }
  expect(parseClientFrame(Buffer.from('{"type":"credit","n":1}'), true).ok).toBe(false);
});

test('batches: small until sizes are known, smaller at once for large messages, larger gradually', () => {
  const s = new BatchSizer(500);
  expect(s.next()).toBe(16);
  s.record(16 * 100, 16); // 100-character frames
  expect(s.next()).toBeGreaterThan(16);
  for (let i = 0; i < 20; i++) s.record(500 * 100, 500);
  expect(s.next()).toBe(500);
  s.record(256 * 1024, 1); // one 256 KiB frame
  expect(s.next()).toBe(4);
});
