/**
 * Any node answers any request: a follower passes API calls on to the leader over HTTP and streams
 * the answer back. With no leader known it answers 503 NoLeader with Retry-After.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
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
  let gone = false;
  let answered = false;
  const onClose = () => {
    if (reply.raw.writableFinished) return;
    gone = true;
    // Once the answer is here, it is read (a pull's messages are given back below), not dropped.
    if (!answered) abort.abort();
  };
  reply.raw.once('close', onClose);
  // It may have gone already (its connection closed before this hook ran).
  if (reply.raw.destroyed) onClose();
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
  answered = true;
  // A pull answered after its client left leased its messages to nobody (the leader did not see the
  // caller go): give them back now rather than after their ack deadline.
  const pull = req.method === 'POST' && pullPath.exec(req.url.split('?')[0]!);
  if (pull && res.statusCode === 200 && (gone || reply.raw.destroyed)) {
    await releaseToLeader(res.body, leaderBase + pull[1] + '/modify-ack-deadline', headers);
    // Nobody reads this; were somebody there after all, an empty answer loses nothing.
    return reply.status(200).send({ messages: [] });
  }
  reply.status(res.statusCode);
  for (const [k, v] of Object.entries(res.headers)) {
    if (v === undefined || hopByHop.has(k) || k === 'content-length') continue;
    reply.header(k, v);
  }
  return reply.send(res.body);
}

/** A pull route: `/v1/subscriptions/{sub}/pull` or `/v1/queues/{queue}/pull` (group 1: up to the name). */
const pullPath = /^(\/v1\/(?:subscriptions|queues)\/[^/]+)\/pull$/;

/** Sets the ack deadline of every message in a pull answer to 0 at the leader (best effort). */
async function releaseToLeader(body: Dispatcher.ResponseData['body'], url: string, headers: Record<string, string>): Promise<void> {
  try {
    const answer = (await body.json()) as { messages?: { ackId?: unknown }[] };
    const ackIds = (answer.messages ?? []).map((m) => m.ackId).filter((id): id is string => typeof id === 'string');
    if (ackIds.length === 0) return;
    const { 'content-length': _length, ...rest } = headers;
    const release = await undiciRequest(url, {
      method: 'POST',
      headers: { ...rest, 'content-type': 'application/json' },
      body: JSON.stringify({ ackIds, seconds: 0 }),
      dispatcher: agent,
    });
    await release.body.dump();
  } catch {
    // The leader is gone or changed: the messages come back when their deadline runs out.
  }
}
