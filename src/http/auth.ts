/**
 * Bearer-token authentication and scope checks, for HTTP routes and WebSocket upgrades.
 *
 * A token is `hrd_<id>_<secret>`: the id finds the record in the replicated state, which holds only
 * the SHA-256 of the secret; the bootstrap admin token comes from the node's configuration and is
 * compared by hash too. No token, or one that does not check out: 401 `Unauthenticated`. A valid
 * token without the scope the route needs: 403 `Forbidden`.
 *
 * A follower checks only what it serves itself (its own `GET /v1/cluster` view and topic tails); what
 * it forwards to the leader, the leader checks, Authorization header included, so a token created a
 * moment ago works on every node at once.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';
import { allows, isAdmin, type ScopeAction, type TokenRecord } from '../core/broker/tokens.js';
import { limits } from '../core/limits.js';
import type { HeraldNode } from '../runtime/herald-node.js';
import { HeraldError } from './errors.js';

export interface AuthConfig {
  enabled: boolean;
  adminToken?: string;
}

/** What a request needs: admin, or one action on one topic or subscription, or nothing (open routes). */
export type Need = { admin: true } | { action: ScopeAction; name: string } | { open: true };

const tokenPattern = /^hrd_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** A new token: its record (what the log stores) and the token string (shown once). */
export function newToken(name: string, scopes: string[]): { record: TokenRecord; token: string } {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { record: { id, name, secretHash: sha256(secret).toString('hex'), scopes, createdAtMs: 0 }, token: `hrd_${id}_${secret}` };
}

/** Who a request comes from: the bootstrap admin (no limits) or a token of the replicated state. */
type Caller = { admin: true; scopes: readonly string[] } | { admin: false; scopes: readonly string[]; token: TokenRecord };

interface Bucket {
  tokens: number;
  atMs: number;
}

/** Rate buckets kept per node; past this many (tokens seen lately) the idle ones are dropped. */
const bucketsMax = 100_000;

export class Authenticator {
  private readonly adminHash: Buffer | undefined;
  private readonly buckets = new Map<string, Bucket>();
  private readonly sockets = new Map<string, number>();

  constructor(
    private readonly config: AuthConfig,
    private readonly node: HeraldNode,
  ) {
    this.adminHash = config.adminToken !== undefined ? sha256(config.adminToken) : undefined;
  }

  get enabled(): boolean {
    return this.config.enabled;
  }

  /** The caller behind the bearer token in `authorization`; throws 401 when there is none or it is not valid. */
  private callerOf(authorization: string | undefined): Caller {
    if (authorization === undefined) throw new HeraldError('Unauthenticated', 'this route needs a bearer token (Authorization: Bearer <token>)');
    const m = /^Bearer +(\S+)$/i.exec(authorization);
    if (!m) throw new HeraldError('Unauthenticated', 'the Authorization header must be "Bearer <token>"');
    const token = m[1]!;
    if (this.adminHash && timingSafeEqual(sha256(token), this.adminHash)) return { admin: true, scopes: ['admin'] };
    const parts = tokenPattern.exec(token);
    const record = parts ? this.node.machine.token(parts[1]!) : undefined;
    if (!parts || !record || !timingSafeEqual(sha256(parts[2]!), Buffer.from(record.secretHash, 'hex'))) {
      throw new HeraldError('Unauthenticated', 'the token is not valid (unknown, revoked or mistyped)');
    }
    return { admin: false, scopes: record.scopes, token: record };
  }

  /**
   * Throws 401, 403 or 429 unless the request's token allows `need` now. Returns the token's record
   * (undefined for the bootstrap admin, or with authentication off).
   */
  check(authorization: string | undefined, need: Need): TokenRecord | undefined {
    if (!this.config.enabled || 'open' in need) return undefined;
    const caller = this.callerOf(authorization);
    if ('admin' in need) {
      if (!isAdmin(caller.scopes)) throw new HeraldError('Forbidden', 'this route needs an admin token');
    } else if (!allows(caller.scopes, need.action, need.name)) {
      throw new HeraldError('Forbidden', `the token may not ${need.action} ${need.name}`);
    }
    if (caller.admin) return undefined;
    this.spend(caller.token);
    return caller.token;
  }

  /** One request from a token: a token bucket of `rateLimitPerSecond` with one second's burst. */
  private spend(token: TokenRecord): void {
    const rate = token.rateLimitPerSecond ?? limits.tokenRateLimitPerSecondDefault;
    if (rate === 0) return;
    const now = Date.now();
    let b = this.buckets.get(token.id);
    if (!b) {
      if (this.buckets.size >= bucketsMax) this.buckets.clear(); // all full again: errs towards letting through
      this.buckets.set(token.id, (b = { tokens: rate, atMs: now }));
    }
    b.tokens = Math.min(rate, b.tokens + ((now - b.atMs) * rate) / 1000);
    b.atMs = now;
    if (b.tokens < 1) {
      throw new HeraldError('RateLimited', `the token's rate limit is ${rate} requests per second`, Math.max(1, Math.ceil((1 - b.tokens) / rate)));
    }
    b.tokens -= 1;
  }

  /**
   * Counts a WebSocket against its token's `webSocketsMax` on this node (429 when full); the returned
   * function gives the place back when the socket closes.
   */
  admitSocket(token: TokenRecord | undefined): () => void {
    if (!token) return () => {};
    const max = token.webSocketsMax ?? limits.tokenWebSocketsDefault;
    const open = this.sockets.get(token.id) ?? 0;
    if (open >= max) throw new HeraldError('RateLimited', `the token already holds ${open} WebSockets on this node (its limit)`, 1);
    this.sockets.set(token.id, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.sockets.get(token.id) ?? 1) - 1;
      if (n <= 0) this.sockets.delete(token.id);
      else this.sockets.set(token.id, n);
    };
  }
}

const consumeVerbs = new Set(['pull', 'ack', 'nack', 'modify-ack-deadline']);

/**
 * What an HTTP route needs, from fastify's route pattern (never the raw URL) and its params. Open:
 * health, readiness and metrics. Publish: posting messages. Consume: the consumer verbs and reading a
 * subscription (or a queue). Everything else — creating, changing and deleting, seek, redrive, push
 * controls, attempts, tokens and the cluster — needs admin.
 */
export function routeNeed(method: string, pattern: string | undefined, params: Record<string, string>): Need {
  if (pattern === '/healthz' || pattern === '/readyz' || pattern === '/metrics') return { open: true };
  if (pattern === undefined) return { admin: true };
  const name = params.name ?? '';
  const verb = pattern.slice(pattern.lastIndexOf('/') + 1);
  if (method === 'POST' && (pattern === '/v1/topics/:name/messages' || pattern === '/v1/queues/:name/messages')) return { action: 'publish', name };
  if (method === 'POST' && consumeVerbs.has(verb) && (pattern.startsWith('/v1/subscriptions/:name/') || pattern.startsWith('/v1/queues/:name/'))) {
    return { action: 'consume', name };
  }
  if (method === 'GET' && (pattern === '/v1/subscriptions/:name' || pattern === '/v1/queues/:name')) return { action: 'consume', name };
  if (method === 'GET' && pattern === '/v1/topics/:name') return { action: 'publish', name };
  return { admin: true };
}

/** The fastify side: checks a request the node serves itself (see the module comment for followers). */
export function checkRequest(auth: Authenticator, request: FastifyRequest): void {
  if (!auth.enabled) return;
  const need = routeNeed(request.method, request.routeOptions.url, (request.params ?? {}) as Record<string, string>);
  auth.check(request.headers.authorization, need);
}

/**
 * The WebSocket side: what an upgrade needs (consume a subscription or queue, or tail a topic), and a
 * place under the token's socket cap; returns the function that frees the place.
 */
export function checkUpgrade(auth: Authenticator, req: IncomingMessage, kind: 'consume' | 'tail' | 'publish', name: string): () => void {
  return auth.admitSocket(auth.check(req.headers.authorization, { action: kind, name }));
}
