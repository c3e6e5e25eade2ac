/**
 * How the simulator puts broker commands into log entries and snapshots on the wire: msgpack with the
 * production codec's options (src/storage/command-codec.ts), so message bodies stay bytes. (A real
 * node writes a publish in a binary form of its own; test/storage/command-codec.test.ts checks that
 * it reads back as the same command, so the simulated followers apply what real ones would.)
 */
import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { Command, StampedCommand } from '../../src/core/broker/commands.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function decode<T>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}

/**
 * A log entry's data: the StampedCommand the broker applies, plus the simulator's own name for the
 * proposal (`id`, which the state machine never reads) so the Raft checkers can follow it.
 */
export interface SimEnvelope {
  id: string;
  nowMs: number;
  command: Command;
}

export function stampedOf(env: SimEnvelope): StampedCommand {
  return { nowMs: env.nowMs, command: env.command };
}

export function digest(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('base64');
}

const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();

export function utf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

export function text(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}
