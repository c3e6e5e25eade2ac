/**
 * Raft messages on the wire between nodes: length-framed binary, not JSON. A frame is
 * [u32 length of the rest][u8 kind][body]; a body is the message's fixed fields followed by its
 * entries, each [f64 index][f64 term][u8 type][u32 length][data]. An append goes out as parts
 * (`encodeMessageParts`): its large entry data is written to the socket as it is, the same buffers for
 * every follower, never copied into a frame; decoding returns views into the received buffer.
 */
import { Packr } from 'msgpackr';
import type { Message } from '../core/raft/messages.js';
import type { Entry, EntryType } from '../core/raft/types.js';

export const frameBytesMax = 64 * 1024 * 1024;

const kinds = ['vote', 'vote-response', 'append', 'append-response', 'heartbeat', 'heartbeat-response', 'snapshot', 'timeout-now'] as const;
const kindCode = new Map<string, number>(kinds.map((k, i) => [k, i]));
const packr = new Packr({ useRecords: false });

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
  }
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new FrameError('frame ends early');
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.pos);
    this.pos += 8;
    if (!Number.isFinite(v)) throw new FrameError('a number field is not finite');
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  done(): void {
    if (this.pos !== this.buf.length) throw new FrameError('trailing bytes in frame');
  }
}

/**
 * A piece of a snapshot on its way to a follower: the driver streams a snapshot as numbered chunks
 * (the broker state first, then message bodies) ahead of the Raft 'snapshot' message itself, so no
 * frame grows with the data. Not a Raft message: the core never sees it.
 */
export interface SnapshotChunk {
  type: 'snapshot-chunk';
  group: number;
  from: number;
  to: number;
  term: number;
  snapshotIndex: number;
  seqNo: number;
  payload: Buffer;
}

/** Anything a peer connection carries. */
export type PeerFrame = Message | SnapshotChunk;

const chunkKind = kinds.length;

export function encodeSnapshotChunk(c: SnapshotChunk): Buffer {
  const w = new Writer(64 + c.payload.length);
  w.u32(0);
  w.u8(chunkKind);
  w.u32(c.group);
  w.u32(c.from);
  w.u32(c.to);
  w.f64(c.term);
  w.f64(c.snapshotIndex);
  w.u32(c.seqNo);
  w.bytes(c.payload);
  if (w.pos - 4 > frameBytesMax) throw new FrameError(`frame of ${w.pos} bytes is over the limit`);
  w.buf.writeUInt32BE(w.pos - 4, 0);
  return w.buf.subarray(0, w.pos);
}

/**
 * Entry data at least this long is not copied into an append's frame but written as its own part:
 * below it, one more buffer in the socket's write costs more than the copy.
 */
export const inlineEntryBytesMax = 1024;

/**
 * Encodes one message as a frame in parts, to be written back to back: the fixed fields and entry
 * headers in one buffer, with each large entry's data between its pieces as it is (shared, not
 * copied). Only an append has more than one part.
 */
export function encodeMessageParts(m: Message): Uint8Array[] {
  if (m.type !== 'append' || !m.entries.some((e) => e.data.length >= inlineEntryBytesMax)) return [encodeMessage(m)];
  let inlineBytes = 0;
  for (const e of m.entries) if (e.data.length < inlineEntryBytesMax) inlineBytes += e.data.length;
  const w = new Writer(64 + 21 * m.entries.length + inlineBytes);
  writeHead(w, m);
  writeAppendFields(w, m);
  const parts: Uint8Array[] = [];
  let pieceStart = 0;
  let frameBytes = 0;
  for (const e of m.entries) {
    w.f64(e.index);
    w.f64(e.term);
    w.u8(e.type ?? 0);
    if (e.data.length < inlineEntryBytesMax) {
      w.bytes(e.data);
      continue;
    }
    w.u32(e.data.length);
    parts.push(w.buf.subarray(pieceStart, w.pos), e.data);
    frameBytes += w.pos - pieceStart + e.data.length;
    pieceStart = w.pos;
  }
  if (w.pos > pieceStart) parts.push(w.buf.subarray(pieceStart, w.pos));
  frameBytes += w.pos - pieceStart;
  if (frameBytes - 4 > frameBytesMax) throw new FrameError(`frame of ${frameBytes} bytes is over the limit`);
  w.buf.writeUInt32BE(frameBytes - 4, 0);
  return parts;
}

/** The length prefix (0 until the frame is done), the kind and the envelope. */
function writeHead(w: Writer, m: Message): void {
  w.u32(0);
  w.u8(kindCode.get(m.type)!);
  w.u32(m.group);
  w.u32(m.from);
  w.u32(m.to);
  w.f64(m.term);
}

/** An append's fixed fields, up to its entries. */
function writeAppendFields(w: Writer, m: Extract<Message, { type: 'append' }>): void {
  w.f64(m.prevIndex);
  w.f64(m.prevTerm);
  w.f64(m.commit);
  w.u32(m.entries.length);
}

/** Encodes one message as a whole frame (length prefix included). */
export function encodeMessage(m: Message): Buffer {
  const w = new Writer(m.type === 'append' ? 64 + m.entries.reduce((n, e) => n + 21 + e.data.length, 0) : 64);
  writeHead(w, m);
  switch (m.type) {
    case 'vote':
      w.u8((m.pre ? 1 : 0) | (m.transfer ? 2 : 0));
      w.f64(m.lastIndex);
      w.f64(m.lastTerm);
      break;
    case 'vote-response':
      w.u8((m.pre ? 1 : 0) | (m.granted ? 2 : 0));
      break;
    case 'append':
      writeAppendFields(w, m);
      for (const e of m.entries) {
        w.f64(e.index);
        w.f64(e.term);
        w.u8(e.type ?? 0);
        w.bytes(e.data);
      }
      break;
    case 'append-response':
      w.f64(m.index);
      w.u8(m.reject ? 1 : 0);
      w.f64(m.hintIndex);
      break;
    case 'heartbeat':
      w.f64(m.commit);
      w.f64(m.context);
      break;
    case 'heartbeat-response':
      w.f64(m.context);
      break;
    case 'snapshot':
      w.bytes(packr.pack({ snapshot: m.snapshot, data: m.data }));
      break;
    case 'timeout-now':
      break;
  }
  if (w.pos - 4 > frameBytesMax) throw new FrameError(`frame of ${w.pos} bytes is over the limit`);
  w.buf.writeUInt32BE(w.pos - 4, 0);
  return w.buf.subarray(0, w.pos);
}

/** Decodes a frame body (without its length prefix). Throws FrameError on anything malformed. */
export function decodeFrame(body: Buffer): PeerFrame {
  if (body.length > 0 && body[0] === chunkKind) {
    const r = new Reader(body);
    r.u8();
    const c: SnapshotChunk = {
      type: 'snapshot-chunk',
      group: r.u32(),
      from: r.u32(),
      to: r.u32(),
      term: r.f64(),
      snapshotIndex: r.f64(),
      seqNo: r.u32(),
      payload: r.bytes(),
    };
    r.done();
    return c;
  }
  return decodeMessage(body);
}

export function decodeMessage(body: Buffer): Message {
  const r = new Reader(body);
  const kind = kinds[r.u8()];
  if (kind === undefined) throw new FrameError('unknown message kind');
  const group = r.u32();
  const from = r.u32();
  const to = r.u32();
  const term = r.f64();
  // Every kind is built field by field: one object per message, none for a shared envelope.
  let m: Message;
  switch (kind) {
    case 'vote': {
      const flags = r.u8();
      m = { group, from, to, term, type: 'vote', pre: (flags & 1) !== 0, transfer: (flags & 2) !== 0, lastIndex: r.f64(), lastTerm: r.f64() };
      break;
    }
    case 'vote-response': {
      const flags = r.u8();
      m = { group, from, to, term, type: 'vote-response', pre: (flags & 1) !== 0, granted: (flags & 2) !== 0 };
      break;
    }
    case 'append': {
      const prevIndex = r.f64();
      const prevTerm = r.f64();
      const commit = r.f64();
      const count = r.u32();
      if (count > body.length / 21) throw new FrameError('entry count larger than the frame');
      const entries: Entry[] = new Array(count);
      for (let i = 0; i < count; i++) {
        const index = r.f64();
        const t = r.f64();
        const type = r.u8();
        if (type > 1) throw new FrameError('unknown entry type');
        entries[i] = { index, term: t, type: type as EntryType, data: r.bytes() };
      }
      m = { group, from, to, term, type: 'append', prevIndex, prevTerm, commit, entries };
      break;
    }
    case 'append-response': {
      const index = r.f64();
      const reject = r.u8() !== 0;
      m = { group, from, to, term, type: 'append-response', index, reject, hintIndex: r.f64() };
      break;
    }
    case 'heartbeat':
      m = { group, from, to, term, type: 'heartbeat', commit: r.f64(), context: r.f64() };
      break;
    case 'heartbeat-response':
      m = { group, from, to, term, type: 'heartbeat-response', context: r.f64() };
      break;
    case 'snapshot': {
      let payload: { snapshot: Extract<Message, { type: 'snapshot' }>['snapshot']; data: unknown };
      try {
        payload = packr.unpack(r.bytes()) as typeof payload;
      } catch {
        throw new FrameError('malformed snapshot payload');
      }
      if (!payload || typeof payload.snapshot?.index !== 'number') throw new FrameError('malformed snapshot payload');
      m = { group, from, to, term, type: 'snapshot', snapshot: payload.snapshot, data: payload.data };
      break;
    }
    case 'timeout-now':
      m = { group, from, to, term, type: 'timeout-now' };
      break;
  }
  r.done();
  return m;
}
