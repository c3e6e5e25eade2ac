/**
 * What a consumer socket's client may send, checked as strictly as the HTTP bodies are (unknown
 * fields refused): `credit`, `ack` and `nack` (API.md, "Push delivery" → "WebSocket"). A bad frame
 * is a value, not a throw: the session answers it with an error frame and carries on.
 */
import type { RawData } from 'ws';
import { limits } from '../core/limits.js';
import { wsLimits } from './ws-limits.js';

export type ClientFrame =
  | { type: 'credit'; n: number }
  | { type: 'ack'; ackIds: string[] }
  | { type: 'nack'; ackIds: string[]; delaySeconds: number | undefined };

export type ParsedFrame = { ok: true; frame: ClientFrame } | { ok: false; message: string };

const bad = (message: string): ParsedFrame => ({ ok: false, message });

/** A text frame's content. ws hands a frame over as one Buffer, or as its fragments: read in place, not copied. */
export function frameText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return (Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
}

export function parseClientFrame(data: RawData, isBinary: boolean): ParsedFrame {
  if (isBinary) return bad('frames are JSON text, not binary');
  let value: unknown;
  try {
    value = JSON.parse(frameText(data));
  } catch {
    return bad('a frame must be JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('a frame must be a JSON object');
  const o = value as Record<string, unknown>;
  switch (o.type) {
    case 'credit': {
      const extra = extraField(o, ['type', 'n']);
      if (extra) return bad(`credit frames have no field ${extra}`);
      if (!isIntegerIn(o.n, 1, wsLimits.creditsOutstandingMax)) return bad(`credit n must be an integer 1–${wsLimits.creditsOutstandingMax}`);
      return { ok: true, frame: { type: 'credit', n: o.n as number } };
    }
    case 'ack': {
      const extra = extraField(o, ['type', 'ackIds']);
      if (extra) return bad(`ack frames have no field ${extra}`);
      const problem = ackIdsProblem(o.ackIds);
      if (problem) return bad(problem);
      return { ok: true, frame: { type: 'ack', ackIds: o.ackIds as string[] } };
    }
    case 'nack': {
      const extra = extraField(o, ['type', 'ackIds', 'delaySeconds']);
      if (extra) return bad(`nack frames have no field ${extra}`);
      const problem = ackIdsProblem(o.ackIds);
      if (problem) return bad(problem);
      if (o.delaySeconds !== undefined && !isIntegerIn(o.delaySeconds, 0, limits.ackDeadlineSecondsMax)) {
        return bad(`nack delaySeconds must be an integer 0–${limits.ackDeadlineSecondsMax}`);
      }
      return { ok: true, frame: { type: 'nack', ackIds: o.ackIds as string[], delaySeconds: o.delaySeconds as number | undefined } };
    }
    default:
      return bad(typeof o.type === 'string' ? `unknown frame type ${JSON.stringify(o.type.slice(0, 64))}` : 'a frame needs a string "type": credit, ack or nack');
  }
}

function extraField(o: Record<string, unknown>, allowed: string[]): string | undefined {
  return Object.keys(o).find((k) => !allowed.includes(k));
}

function isIntegerIn(v: unknown, min: number, max: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function ackIdsProblem(v: unknown): string | undefined {
  if (!Array.isArray(v) || v.length < 1 || v.length > wsLimits.ackIdsPerFrameMax) {
    return `ackIds must be an array of 1–${wsLimits.ackIdsPerFrameMax} strings`;
  }
  for (const id of v) {
    if (typeof id !== 'string' || id.length < 1 || id.length > wsLimits.ackIdLengthMax) {
      return `each ackId must be a string of 1–${wsLimits.ackIdLengthMax} characters`;
    }
  }
  return undefined;
}
