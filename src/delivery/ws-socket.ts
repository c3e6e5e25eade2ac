/**
 * What consumer sessions and topic tails share about writing to a socket: close codes, error frames,
 * sending a batch in one write, and sizing the next batch so that the bytes queued for a slow reader
 * stay near `wsLimits.sendBufferBytesMax`.
 */
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import type { ErrorCode } from '../http/errors.js';
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
 * Sends frames as one write: the underlying socket is corked around them, so a batch of small
 * messages costs one syscall instead of one each. Returns the characters sent.
 */
export function sendFrames(socket: WebSocket, frames: string[]): number {
  if (socket.readyState !== WebSocket.OPEN) return 0;
  // `_socket` is ws's own handle on the connection; cork/uncork nest, so ws's per-frame corking inside
  // send() does not flush early.
  const raw = (socket as unknown as { _socket?: Socket })._socket;
  raw?.cork();
  let chars = 0;
  try {
    for (const f of frames) {
      socket.send(f);
      chars += f.length;
    }
  } finally {
    raw?.uncork();
  }
  return chars;
}

/**
 * How many messages to take next: as many as fit the send buffer at the recent average frame size,
 * so a batch of large messages cannot queue many megabytes behind a slow reader at once.
 */
export class BatchSizer {
  /** Until a batch has been seen, messages are assumed large: the first batch is small (16). */
  private frameCharsAvg = wsLimits.sendBufferBytesMax / 16;

  constructor(private readonly batchMax: number) {}

  next(): number {
    return Math.max(1, Math.min(this.batchMax, Math.floor(wsLimits.sendBufferBytesMax / this.frameCharsAvg)));
  }

  record(chars: number, frames: number): void {
    if (frames === 0) return;
    const latest = Math.max(64, chars / frames);
    // Larger messages shrink the next batch at once; smaller ones grow it gradually, so a mix of sizes
    // errs towards small batches.
    this.frameCharsAvg = latest >= this.frameCharsAvg ? latest : 0.5 * this.frameCharsAvg + 0.5 * latest;
  }
}
