/**
 * What bench/peers.ts needs from each system it compares (Herald, RabbitMQ, NATS JetStream): a way to
 * start and stop a local 3-node group, a fresh queue or stream per scenario, a publisher that resolves
 * only once the broker has confirmed, and a consumer that acks what it is given. The load loops
 * themselves (bench/lib/peers/scenarios.ts) are the same for every system, so each driver only
 * translates "send n messages and wait for the confirm" and "hand me messages, I ack them".
 */

export interface Publisher {
  /**
   * Messages per `send`. Herald takes up to 16 per HTTP request (a batch, as CMQ's clients do);
   * RabbitMQ and NATS publish one message per call and confirm it on its own.
   */
  readonly maxBatch: number;
  /**
   * Publishes `count` (≤ maxBatch) messages of the peer's message size and resolves once the broker
   * confirmed all of them (publisher confirm, JetStream PubAck, HTTP 2xx); rejects otherwise. With
   * `stamp`, each payload starts with `t<performance.now()>|` (see stampOf in bench/lib/load.ts).
   */
  send(count: number, stamp: boolean): Promise<void>;
  close(): Promise<void>;
}

export interface Consumer {
  /** Stops taking messages and waits for the consumer's loops to end. */
  close(): Promise<void>;
}

/** Called once per delivered message, before it is acked; `stamp` is the publish time if stamped. */
export type OnMessage = (stamp: number | undefined) => void;

export interface Peer {
  /** e.g. "RabbitMQ" */
  readonly name: string;
  /** Versions and settings, for the report. */
  describe(): string;
  /** A fresh, empty queue or stream for the next scenario; the previous one is deleted. */
  reset(): Promise<void>;
  publisher(): Promise<Publisher>;
  /**
   * Starts consuming the current queue or stream with at most `inflight` messages delivered and not
   * yet acked (prefetch, max ack pending, or pullers × pull size), calling `onMessage` for each.
   */
  consumer(inflight: number, onMessage: OnMessage): Promise<Consumer>;
  /** Stops every process this driver started (and nothing else), removes its temp dirs. */
  stop(): Promise<void>;
}

/** `stampOf` for bytes: parses `t<ms>|` from the first 32 bytes without decoding the whole payload. */
export function stampOfBytes(b: Uint8Array): number | undefined {
  if (b[0] !== 116 /* t */) return undefined;
  const end = Math.min(b.length, 32);
  for (let i = 1; i < end; i++) {
    if (b[i] === 124 /* | */) {
      const v = Number(Buffer.from(b.buffer, b.byteOffset + 1, i - 1).toString('latin1'));
      return Number.isFinite(v) ? v : undefined;
    }
  }
  return undefined;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns true; throws with `what` after `timeoutMs`. */
export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, everyMs = 500): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`${what}: not ready within ${timeoutMs / 1000} s${last ? ` (last error: ${(last as Error).message ?? last})` : ''}`);
}
