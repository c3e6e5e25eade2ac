/**
 * Answers for upgrade requests that are refused: they never reach fastify, so its error handler
 * cannot write them; these write the same `{"error": {"code", "message"}}` bodies straight to the socket.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorStatus, type ErrorCode } from './errors.js';

export function refuseUpgrade(socket: Duplex, code: ErrorCode, message: string, retryAfterSeconds?: number): void {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (retryAfterSeconds !== undefined) headers['retry-after'] = String(retryAfterSeconds);
  writeRawResponse(socket, errorStatus[code], headers, Buffer.from(JSON.stringify({ error: { code, message } })));
}

/** Writes a whole HTTP/1.1 response and closes the connection. */
export function writeRawResponse(socket: Duplex, status: number, headers: Record<string, string>, body: Buffer): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), body]));
}
