/**
 * A follower's subscription socket goes to the leader, where leases are made: the follower opens a
 * WebSocket to the leader's same path first, and only once the leader has accepted does it accept
 * its client, so a refusal there (404, 503) reaches the client as the leader gave it. Then frames
 * are piped both ways as they are (text stays text), backpressure included: while one side cannot
 * take more, the other is not read, so the leader's own send-buffer check sees a slow client. When
 * either side closes, so does the other; a lost leader closes the client with 1012 (reconnect).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, type WebSocketServer } from 'ws';
import { wsLimits } from '../delivery/ws-limits.js';
import { closeCodes, isBackedUp, whenDrained } from '../delivery/ws-socket.js';
import { refuseUpgrade, writeRawResponse } from './upgrade-response.js';

export interface ProxyContext {
  wss: WebSocketServer;
  /** Called with each accepted pair, for heartbeats and shutdown. */
  onPair: (client: WebSocket, upstream: WebSocket) => void;
  /** Upstream sockets still in their handshake, so that shutdown can abort them. */
  connecting: Set<WebSocket>;
  /** The CA the leader's certificate is checked against (TLS). */
  ca?: Buffer;
}

/** Header the leader sees on a proxied upgrade: a follower never proxies one again (no loops). */
export const forwardedHeader = 'x-herald-forwarded';

export function proxyUpgrade(ctx: ProxyContext, req: IncomingMessage, socket: Duplex, head: Buffer, leaderBase: string): void {
  const target = leaderBase.replace(/^http/, 'ws') + (req.url ?? '/');
  const upstream = new WebSocket(target, {
    // The leader checks the client's token.
    headers: { [forwardedHeader]: '1', ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}) },
    handshakeTimeout: wsLimits.proxyHandshakeMs,
    // With TLS (wss://), the leader's certificate is checked against the configured CA.
    ...(ctx.ca ? { ca: ctx.ca } : {}),
    perMessageDeflate: false,
  });
  ctx.connecting.add(upstream);
  let settled = false;
  const giveUp = () => {
    if (!settled) upstream.terminate();
  };
  socket.once('close', giveUp);

  upstream.on('unexpected-response', (upReq, res) => {
    // The leader refused (no such subscription, or it stopped leading): pass its answer on.
    const chunks: Buffer[] = [];
    let bytes = 0;
    res.on('data', (c: Buffer) => {
      bytes += c.length;
      if (bytes <= wsLimits.proxyRefusalBodyBytesMax) chunks.push(c);
    });
    res.on('error', () => {});
    res.on('end', () => {
      finish();
      const headers: Record<string, string> = {};
      for (const name of ['content-type', 'retry-after']) {
        const v = res.headers[name];
        if (typeof v === 'string') headers[name] = v.replace(/[\r\n]/g, '');
      }
      writeRawResponse(socket, res.statusCode ?? 502, headers, Buffer.concat(chunks));
      upReq.destroy();
    });
  });
  upstream.on('error', (error) => {
    if (settled) return;
    finish();
    refuseUpgrade(socket, 'Unavailable', `the leader could not be reached: ${error.message}`, 1);
  });
  upstream.once('open', () => {
    if (settled) return;
    finish();
    let accepted = false;
    ctx.wss.handleUpgrade(req, socket, head, (client) => {
      accepted = true;
      pipe(client, upstream);
      ctx.onPair(client, upstream);
    });
    // handleUpgrade answers synchronously: not accepted means it refused the client (and said so).
    if (!accepted) upstream.terminate();
  });

  function finish() {
    settled = true;
    ctx.connecting.delete(upstream);
    socket.off('close', giveUp);
  }
}

function pipe(client: WebSocket, upstream: WebSocket): void {
  forward(client, upstream);
  forward(upstream, client);
  client.on('error', () => {});
  upstream.on('error', () => {});
  client.once('close', (code, reason) => closeWith(upstream, code, reason, closeCodes.normal));
  // The leader going away without a close frame is a lost leader: the client should reconnect.
  upstream.once('close', (code, reason) => closeWith(client, code, reason, closeCodes.serviceRestart));
}

/** Frames from one side to the other; the source is paused while the target's buffer is full. */
function forward(from: WebSocket, to: WebSocket): void {
  let waiting = false;
  const resumeWhenDrained = () => {
    if (to.readyState !== WebSocket.OPEN) return;
    if (isBackedUp(to)) {
      whenDrained(to, resumeWhenDrained);
      return;
    }
    waiting = false;
    from.resume();
  };
  from.on('message', (data, isBinary) => {
    if (to.readyState !== WebSocket.OPEN) return;
    to.send(data, { binary: isBinary });
    if (!waiting && isBackedUp(to)) {
      waiting = true;
      from.pause();
      whenDrained(to, resumeWhenDrained);
    }
  });
}

/** Closes `socket` as its peer closed: the same code when it may be sent, else `fallback`. */
function closeWith(socket: WebSocket, code: number, reason: Buffer, fallback: number): void {
  if (socket.readyState === WebSocket.CLOSED) return;
  if (socket.readyState === WebSocket.CONNECTING) return socket.terminate();
  // 1005 (no code), 1006 (abnormal) and 1015 (TLS) are reported, never sent.
  const sendable = (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
  socket.close(sendable ? code : fallback, sendable ? reason : undefined);
}
