/**
 * Any node answers any request: a follower passes API calls on to the leader over HTTP and streams
 * the answer back. With no leader known it answers 503 NoLeader with Retry-After.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Agent, request as undiciRequest } from 'undici';
import { HeraldError } from './errors.js';

const hopByHop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer', 'host']);

let agent = new Agent({ keepAliveTimeout: 30_000, connections: 128, headersTimeout: 60_000, bodyTimeout: 60_000 });

/** With TLS, the leader's HTTPS certificate is checked against this CA (default: the system's). */
export function trustForForwarding(ca: Buffer | undefined): void {
  if (!ca) return;
  void agent.close();
  agent = new Agent({ keepAliveTimeout: 30_000, connections: 128, headersTimeout: 60_000, bodyTimeout: 60_000, connect: { ca } });
}

export async function forwardToLeader(req: FastifyRequest, reply: FastifyReply, leaderBase: string): Promise<FastifyReply> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || hopByHop.has(k)) continue;
    headers[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  headers['x-herald-forwarded'] = '1';
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'DELETE';
  // When the client goes away, drop the forwarded request too: the leader then sees its caller gone
  // (a long poll must not lease messages to nobody).
  const abort = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) abort.abort();
  };
  reply.raw.once('close', onClose);
  let res;
  try {
    res = await undiciRequest(leaderBase + req.url, {
      method: req.method as 'GET',
      headers,
      body: hasBody ? req.raw : null,
      dispatcher: agent,
      signal: abort.signal,
    });
  } catch (error) {
    throw new HeraldError('Unavailable', `the leader did not answer: ${(error as Error).message}`, 1);
  }
  reply.status(res.statusCode);
  for (const [k, v] of Object.entries(res.headers)) {
    if (v === undefined || hopByHop.has(k) || k === 'content-length') continue;
    reply.header(k, v);
  }
  return reply.send(res.body);
}
