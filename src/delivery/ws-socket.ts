/**
 * What consumer sessions and topic tails share about writing to a socket: close codes, error frames,
 * sending a batch in one write, and sizing the next batch so that the bytes queued for a slow reader
 * stay near `wsLimits.sendBufferBytesMax`.
 */
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import type { ErrorCode } from '../http/errors.js';
import { WireBuffer } from '../http/wire-buffer.js';
import { wsLimits } from './ws-limits.js';

/** RFC 6455 close codes Herald uses. */
export const closeCodes = {
  /** The subscription or topic is gone (an error frame says which). */
  normal: 1000,
  /** The node is shutting down. */
  goingAway: 1001,
  /** Too many bad frames in a row. */
  policyViolation: 1008,
  internalError: 1011,
  /** This node stopped leading (or lost the leader it proxied to): reconnect, any node serves. */
  serviceRestart: 1012,
} as const;

/** A socket over its send buffer is looked at again on its TCP socket's 'drain', or after this at the latest. */
export const drainPollMs = 20;

/**
 * Calls `fn` once the socket's send buffer has drained: on the underlying TCP socket's 'drain' (ws
 * has no drain event of its own), with a timer as the fallback. Polling alone would leave a fast
 * reader idle for most of each interval.
 */
export function whenDrained(socket: WebSocket, fn: () => void): void {
  const raw = (socket as unknown as { _socket?: Socket })._socket;
  if (!raw || raw.destroyed) {
    setTimeout(fn, drainPollMs);
    return;
  }
  let called = false;
  const done = () => {
    if (called) return;
    called = true;
    clearTimeout(timer);
    raw.off('drain', done);
    raw.off('close', done);
    fn();
  };
  const timer = setTimeout(done, drainPollMs);
  raw.once('drain', done);
  raw.once('close', done);
}

export function isBackedUp(socket: WebSocket): boolean {
  return socket.bufferedAmount > wsLimits.sendBufferBytesMax;
}

export function sendError(socket: WebSocket, code: ErrorCode, message: string): void {
  if (socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: 'error', code, message }));
}

/**
 * Text frames built straight into one buffer and written to the connection in one write: a batch of
 * messages costs one copy and one syscall, and no string is made of any of them. The bytes go out on
 * ws's own TCP socket (`_socket`), unmasked as a server's frames are. That is safe beside ws's sender
 * because permessage-deflate is off (websocket.ts) and we send no Blobs: ws then writes each of its
 * own frames (pings, closes, errors) whole and at once, so nothing can land inside one of ours.
 */
export class TextFrameBatch {
  private readonly out: WireBuffer;
  frames = 0;

  constructor(capacityBytes: number) {
    this.out = new WireBuffer(capacityBytes);
  }

  /** Adds one frame whose payload `write` writes (UTF-8 JSON) straight after its header. */
  add<T>(write: (w: WireBuffer, item: T) => void, item: T): void {
    const out = this.out;
    // Room for the usual header (a 16-bit length); the payload is moved if it needs another size.
    let at = out.reserve(4);
    write(out, item);
    const n = out.length - at - 4;
    if (n < 126) {
      out.shift(at + 4, -2);
      out.setByte(at, 0x81); // FIN, opcode 1: text
      out.setByte(at + 1, n);
    } else if (n < 65536) {
      out.setByte(at, 0x81);
      out.setByte(at + 1, 126);
      out.setByte(at + 2, n >>> 8);
      out.setByte(at + 3, n & 0xff);
    } else {
      out.shift(at + 4, 6);
      out.setByte(at++, 0x81);
      out.setByte(at++, 127);
      // A 64-bit length; payloads here are far below 2^32.
      for (let shift = 56; shift >= 0; shift -= 8) out.setByte(at++, shift >= 32 ? 0 : (n >>> shift) & 0xff);
    }
    this.frames++;
  }

  /** The frames' bytes, as they go on the wire. */
  bytes(): Buffer {
    return this.out.written();
  }

  /** Writes the batch; returns the bytes sent (0 when the socket is no longer open). */
  send(socket: WebSocket): number {
    const raw = (socket as unknown as { _socket?: Socket })._socket;
    if (this.frames === 0 || socket.readyState !== WebSocket.OPEN || !raw || raw.destroyed) return 0;
    const bytes = this.out.written();
    raw.write(bytes);
    return bytes.length;
  }
}

/**
 * How many messages to take next: as many as fit the send buffer at the recent average frame size,
 * so a batch of large messages cannot queue many megabytes behind a slow reader at once.
 */
export class BatchSizer {
  /** Until a batch has been seen, messages are assumed large: the first batch is small (16). */
  private frameBytesAvg = wsLimits.sendBufferBytesMax / 16;

  constructor(private readonly batchMax: number) {}

  next(): number {
    return Math.max(1, Math.min(this.batchMax, Math.floor(wsLimits.sendBufferBytesMax / this.frameBytesAvg)));
  }

  record(bytes: number, frames: number): void {
    if (frames === 0) return;
    const latest = Math.max(64, bytes / frames);
    // Larger messages shrink the next batch at once; smaller ones grow it gradually, so a mix of sizes
    // errs towards small batches.
    this.frameBytesAvg = latest >= this.frameBytesAvg ? latest : 0.5 * this.frameBytesAvg + 0.5 * latest;
  }
}
