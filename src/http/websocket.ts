/**
 * The WebSocket routes (API.md, "Push delivery" → "WebSocket"). Upgrades never pass through fastify's
 * routing or hooks, so this module does for them what the HTTP side does: routes by URL, checks names
 * with the API's rule, answers refusals with the contract's JSON errors (before upgrading), and on a
 * follower sends subscription sockets to the leader. Topic tails are served by any node.
 *
 *   GET /v1/subscriptions/{sub}/ws, /v1/queues/{queue}/ws   consumer (ws-consumer.ts), on the leader
 *   GET /v1/topics/{topic}/ws?from=<seq | ISO time>          tail (topic-tail.ts), on any node
 *   GET /v1/topics/{topic}/messages/ws, /v1/queues/{queue}/messages/ws
 *                                                            publishing (ws-publish.ts), on the leader
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import type { HeraldNode } from '../runtime/herald-node.js';
import { ConsumerSessions } from '../delivery/ws-consumer.js';
import { TopicTails, type TailStart } from '../delivery/topic-tail.js';
import { wsLimits } from '../delivery/ws-limits.js';
import { closeCodes } from '../delivery/ws-socket.js';
import { HeraldError } from './errors.js';
import { parseTime } from './normalize.js';
import { namePattern } from './schemas.js';
import { refuseUpgrade } from './upgrade-response.js';
import { Heartbeat } from './ws-heartbeat.js';
import { forwardedHeader, proxyUpgrade, type ProxyContext } from './ws-proxy.js';
import { noteWebSocket } from '../metrics/registry.js';
import { checkUpgrade, type Authenticator } from './auth.js';
import { PublishSession } from './ws-publish.js';
import type { DiskGuard } from '../runtime/disk-guard.js';

export interface WebSocketDeps {
  node: HeraldNode;
  /** The HTTP base URL of a cluster member (a follower proxies consumer sockets to the leader's). */
  leaderUrl?: (id: number) => string | undefined;
  /** Server ping interval (default wsLimits.pingIntervalMsDefault). */
  pingIntervalMs?: number;
  /** Bearer tokens: a consumer socket needs `consume` on its subscription, a tail `tail` on its topic. */
  auth?: Authenticator;
  /** The CA for the leader's certificate when a follower proxies over wss:// (TLS). */
  tlsCa?: Buffer;
  /** A full disk refuses publishes (as on HTTP). */
  disk?: DiskGuard;
}

const wsRoute = /^\/v1\/(subscriptions|queues|topics)\/([^/?]+)\/ws$/;
const publishRoute = /^\/v1\/(queues|topics)\/([^/?]+)\/messages\/ws$/;
const nameRule = new RegExp(namePattern);
/** The handshake as ws checks it; checked first so that a follower never opens a leader socket for a
 * client it would then refuse. */
const keyRule = /^[+/0-9A-Za-z]{22}==$/;
/** Sockets that do not finish their closing handshake at shutdown are cut after this. */
const shutdownCloseMs = 1000;

export function attachWebSockets(app: FastifyInstance, deps: WebSocketDeps): void {
  const { node } = deps;
  const wss = new WebSocketServer({ noServer: true, maxPayload: wsLimits.clientFrameBytesMax, perMessageDeflate: false });
  // Publishing sockets take frames as large as an HTTP publish body.
  const publishWss = new WebSocketServer({ noServer: true, maxPayload: wsLimits.publishFrameBytesMax, perMessageDeflate: false });
  // A handshake ws itself refuses (e.g. a malformed Sec-WebSocket-Protocol) gets the contract's body too.
  for (const server of [wss, publishWss]) server.on('wsClientError', (error, socket) => refuseUpgrade(socket, 'InvalidRequest', error.message));
  const heartbeat = new Heartbeat(deps.pingIntervalMs ?? wsLimits.pingIntervalMsDefault);
  const consumers = new ConsumerSessions(node);
  const tails = new TopicTails(node);
  const proxying = new Set<WebSocket>();
  const connecting = new Set<WebSocket>();
  let closing = false;

  const proxyContext = {
    wss,
    connecting,
    ...(deps.tlsCa ? { ca: deps.tlsCa } : {}),
    onPair: (client: WebSocket, upstream: WebSocket) => {
      noteWebSocket('proxy', client);
      heartbeat.watch(client);
      heartbeat.watch(upstream);
      proxying.add(upstream);
      upstream.once('close', () => proxying.delete(upstream));
    },
  };
  const publishProxyContext = { ...proxyContext, wss: publishWss };

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    try {
      route(req, socket, head);
    } catch (error) {
      if (error instanceof HeraldError) refuseUpgrade(socket, error.code, error.message, error.retryAfterSeconds);
      else {
        console.error('herald: websocket upgrade failed', error);
        refuseUpgrade(socket, 'InternalError', 'internal error');
      }
    }
  });

  function route(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (closing) throw new HeraldError('Unavailable', 'the node is shutting down', 1);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const publishing = publishRoute.exec(path);
    const m = publishing ?? wsRoute.exec(path);
    if (!m) throw new HeraldError('NotFound', `no WebSocket route ${path}`);
    checkHandshake(req);
    const name = decodeName(m[2]!);
    if (publishing) return openPublisher(req, socket, head, name);
    if (m[1] === 'topics') {
      // Tails are served here, whatever this node's role: checked here.
      const release = deps.auth?.enabled ? checkUpgrade(deps.auth, req, 'tail', name) : undefined;
      try {
        return openTail(req, socket, head, name, new URLSearchParams(q < 0 ? '' : url.slice(q + 1)), release);
      } catch (error) {
        release?.();
        throw error;
      }
    }
    if (!node.isLeader) return toLeader(proxyContext, req, socket, head);
    // The leader checks consumer sockets (a follower passes the Authorization header on).
    admitOnLeader(req, socket, 'consume', name, node.machine.subscriptionConfig(name) !== undefined, () => new HeraldError('SubscriptionNotFound', `subscription ${name} not found`));
    wss.handleUpgrade(req, socket, head, (ws) => {
      heartbeat.watch(ws);
      noteWebSocket('consumer', ws);
      consumers.open(ws, name).pump();
    });
  }

  /**
   * On the leader: the token's check and a place under its socket cap (held until the socket closes),
   * then `notFound` unless what the socket is for exists.
   */
  function admitOnLeader(req: IncomingMessage, socket: Duplex, action: 'consume' | 'publish', name: string, exists: boolean, notFound: () => HeraldError): void {
    const release = deps.auth?.enabled ? checkUpgrade(deps.auth, req, action, name) : undefined;
    if (!exists) {
      release?.();
      throw notFound();
    }
    socket.once('close', () => release?.());
  }

  /** On a follower: the socket goes to the leader (ws-proxy.ts); 503 NoLeader while none is known. */
  function toLeader(ctx: ProxyContext, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const leader = node.leaderId;
    const target = leader && req.headers[forwardedHeader] === undefined ? deps.leaderUrl?.(leader) : undefined;
    if (!target) throw new HeraldError('NoLeader', 'no leader is known yet; retry', 1);
    proxyUpgrade(ctx, req, socket, head, target);
  }

  /** A publishing socket: proxied to the leader from a follower, served on the leader (ws-publish.ts). */
  function openPublisher(req: IncomingMessage, socket: Duplex, head: Buffer, topic: string): void {
    if (!node.isLeader) return toLeader(publishProxyContext, req, socket, head);
    // The leader checks publishing sockets, and then every frame (a follower passes the header on).
    admitOnLeader(req, socket, 'publish', topic, node.machine.topicConfig(topic) !== undefined, () => new HeraldError('TopicNotFound', `topic ${topic} not found`));
    const authorization = req.headers.authorization;
    publishWss.handleUpgrade(req, socket, head, (ws) => {
      heartbeat.watch(ws);
      noteWebSocket('publisher', ws);
      new PublishSession(ws, topic, authorization, { node, ...(deps.disk ? { disk: deps.disk } : {}), ...(deps.auth?.enabled ? { auth: deps.auth } : {}) });
    });
  }

  function openTail(req: IncomingMessage, socket: Duplex, head: Buffer, topic: string, query: URLSearchParams, release?: () => void): void {
    const start = tailStart(node, topic, query.get('from'));
    socket.once('close', () => release?.());
    wss.handleUpgrade(req, socket, head, (ws) => {
      heartbeat.watch(ws);
      noteWebSocket('tail', ws);
      // The topic was there a moment ago; if it went in between, say so on the socket.
      if (!tails.open(ws, topic, start)) {
        ws.send(JSON.stringify({ type: 'error', code: 'TopicNotFound', message: `topic ${topic} not found` }));
        ws.close(closeCodes.normal);
      }
    });
  }

  // Before fastify closes its server (which waits for every connection), close the sockets: consumers
  // give their leases back while the node can still commit that.
  app.addHook('preClose', async () => {
    closing = true;
    heartbeat.stop();
    for (const u of connecting) u.terminate();
    tails.shutdown();
    for (const u of proxying) u.close(closeCodes.goingAway);
    await consumers.shutdown();
    const open = [...wss.clients, ...publishWss.clients];
    for (const ws of open) ws.close(closeCodes.goingAway);
    const allClosed = Promise.all(open.map((ws) => (ws.readyState === ws.CLOSED ? undefined : new Promise((r) => ws.once('close', r)))));
    await Promise.race([allClosed, new Promise((r) => setTimeout(r, shutdownCloseMs).unref())]);
    for (const ws of [...wss.clients, ...publishWss.clients]) ws.terminate();
    for (const u of proxying) u.terminate();
  });
}

function checkHandshake(req: IncomingMessage): void {
  if (req.method !== 'GET') throw new HeraldError('InvalidRequest', 'a WebSocket upgrade is a GET');
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') throw new HeraldError('InvalidRequest', 'only WebSocket upgrades are served');
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !keyRule.test(key)) throw new HeraldError('InvalidRequest', 'missing or invalid Sec-WebSocket-Key');
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') throw new HeraldError('InvalidRequest', 'Sec-WebSocket-Version must be 13');
}

function decodeName(segment: string): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new HeraldError('InvalidRequest', 'the name is not valid percent-encoding');
  }
  if (!nameRule.test(name)) {
    throw new HeraldError('InvalidRequest', 'names are 1–128 characters of A-Za-z0-9._- starting with a letter or digit');
  }
  return name;
}

/** `from`: a seq (inclusive), an ISO-8601 time (the first message published at or after it), or
 * absent (the next message published). */
function tailStart(node: HeraldNode, topic: string, from: string | null): TailStart {
  if (!node.machine.topicConfig(topic)) throw new HeraldError('TopicNotFound', `topic ${topic} not found`);
  if (from === null) return { next: true };
  if (/^\d{1,16}$/.test(from)) {
    const seq = Number(from);
    if (seq < 1 || !Number.isSafeInteger(seq)) throw new HeraldError('InvalidRequest', 'from must be a seq of 1 or more, or an ISO-8601 time');
    return { seq };
  }
  let timeMs: number;
  try {
    timeMs = parseTime(from, 'from');
  } catch {
    throw new HeraldError('InvalidRequest', 'from must be a seq of 1 or more, or an ISO-8601 time');
  }
  const seq = node.machine.topicSeqAtTime(topic, timeMs);
  if (seq === undefined) throw new HeraldError('TopicNotFound', `topic ${topic} not found`);
  return { seq };
}
