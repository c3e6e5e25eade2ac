/**
 * The HTTP API as a fastify instance (not listening: server.ts does that). Routes live in
 * routes/<resource>.ts; every error leaves through one handler in the contract's shape.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { limits } from '../core/limits.js';
import type { HeraldNode } from '../runtime/herald-node.js';
import type { PullService } from '../delivery/pull-waiters.js';
import type { PushDispatcher } from '../delivery/push-dispatcher.js';
import type { DiskGuard } from '../runtime/disk-guard.js';
import { HeraldError, toContractError } from './errors.js';
import { forwardToLeader } from './forward.js';
import { topicRoutes } from './routes/topics.js';
import { subscriptionRoutes } from './routes/subscriptions.js';
import { queueRoutes } from './routes/queues.js';
import { operationsRoutes } from './routes/operations.js';
import { tokenRoutes } from './routes/tokens.js';
import { checkRequest, type Authenticator } from './auth.js';
import { attachWebSockets } from './websocket.js';
import { instrumentHttp } from '../metrics/registry.js';
import { installJsonBodyParser } from './json-body.js';

export interface AppDeps {
  node: HeraldNode;
  pull: PullService;
  /** Refuses publishes when storage is full (absent: never). */
  disk?: DiskGuard;
  /** TLS: serve HTTPS with this certificate and key; `ca` checks the other nodes' certificates. */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
  /** Bearer tokens and scopes (absent: no authentication). */
  auth?: Authenticator;
  /** Webhook push (absent in tests that build the app alone). */
  push?: PushDispatcher;
  /** Whether push URLs may point at loopback, private, link-local or metadata addresses. */
  allowPrivateWebhooks?: boolean;
  /** The HTTP base URL of a cluster member (for forwarding to the leader). */
  leaderUrl?: (id: number) => string | undefined;
  /** How often WebSocket clients are pinged (default 15 s). */
  wsPingIntervalMs?: number;
}

/** Timeouts against slow and idle clients; `HERALD_HEADERS_TIMEOUT_MS` and
 * `HERALD_KEEP_ALIVE_TIMEOUT_MS` change them (tests). */
const httpLimits = {
  headersTimeoutMs: Math.max(1000, Number(process.env.HERALD_HEADERS_TIMEOUT_MS) || 10_000),
  /** An idle keep-alive connection is closed after this (longer than common load balancers' 60 s). */
  keepAliveTimeoutMs: Math.max(1000, Number(process.env.HERALD_KEEP_ALIVE_TIMEOUT_MS) || 65_000),
} as const;

/** How much of an oversized body is read and dropped before the connection is cut. */
const oversizedBodyDrainBytesMax = 64 * 1024 * 1024;

export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    ...(deps.tls ? { https: { cert: deps.tls.cert, key: deps.tls.key } } : {}),
    logger: false,
    bodyLimit: limits.requestBodyBytesMax,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    // No limit on a whole connection; one request (a long poll included) gets 120 s at most.
    connectionTimeout: 0,
    keepAliveTimeout: httpLimits.keepAliveTimeoutMs,
    requestTimeout: 120_000,
    // Against slow clients (slowloris): the request line and headers must arrive within
    // headersTimeoutMs, checked every second rather than node's default 30 s.
    http: { headersTimeout: httpLimits.headersTimeoutMs, connectionsCheckingInterval: 1000 },
    return503OnClosing: true,
    // Names are up to 128 characters; percent-encoding can triple that. The schema says what is too long.
    routerOptions: { maxParamLength: 1024 },
    // Errors fastify raises before routing (bad URL encoding, ...) get the contract's body too.
    frameworkErrors: (error, _request, reply) => {
      void (reply as unknown as { code(n: number): { send(b: unknown): void } })
        .code(400)
        .send({ error: { code: 'InvalidRequest', message: error.message } });
    },
    // Requests the HTTP parser cannot read at all (unknown method, oversized request line or headers).
    clientErrorHandler: (error, socket) => {
      if (!socket.writable) return socket.destroy();
      const body = JSON.stringify({ error: { code: 'InvalidRequest', message: `unreadable request: ${(error as NodeJS.ErrnoException).code ?? error.message}` } });
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    },
  });

  installJsonBodyParser(app);

  // Authentication, where the request is served: the leader, or a follower for what it answers itself
  // (its own cluster view); what a follower forwards, the leader checks.
  app.addHook('onRequest', async (request) => {
    if (!deps.auth?.enabled) return;
    if (deps.node.isLeader || !request.url.startsWith('/v1/') || isOwnClusterView(request.method, request.url)) checkRequest(deps.auth, request);
  });

  // Followers pass API calls to the leader; a call forwarded once is never forwarded again (no loops).
  app.addHook('onRequest', async (request, reply) => {
    if (deps.node.isLeader || !request.url.startsWith('/v1/')) return;
    // This node's own view of the group is answered here; membership changes go to the leader.
    if (isOwnClusterView(request.method, request.url)) return;
    const leader = deps.node.leaderId;
    const target = leader && request.headers['x-herald-forwarded'] === undefined ? deps.leaderUrl?.(leader) : undefined;
    if (!target) throw new HeraldError('NoLeader', 'no leader is known yet; retry', 1);
    return forwardToLeader(request, reply, target);
  });

  // A POST or PUT without a body is an empty object: routes whose fields are all optional take it,
  // the rest answer with the schema's message about what is missing.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined || request.body === null) {
      if (request.method === 'POST' || request.method === 'PUT' || request.method === 'PATCH') request.body = {};
    }
  });

  app.setErrorHandler((error: FastifyError | HeraldError | Error, request, reply) => {
    const { status, code, message, retryAfterSeconds } = toContractError(error);
    if (retryAfterSeconds !== undefined) reply.header('retry-after', String(retryAfterSeconds));
    if (status >= 500) request.log.error(error);
    if (status === 413 && !request.raw.readableEnded) {
      // Read and drop the rest of an oversized body (bounded), so the client sees the 413 instead of
      // a connection reset while it is still sending.
      let drained = 0;
      request.raw.on('data', (chunk: Buffer) => {
        drained += chunk.length;
        if (drained > oversizedBodyDrainBytesMax) request.raw.destroy();
      });
      request.raw.resume();
      reply.header('connection', 'close');
    }
    reply.status(status).send({ error: { code, message } });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ error: { code: 'NotFound', message: `no route ${request.method} ${request.url.split('?')[0]}` } });
  });

  instrumentHttp(app);
  app.register(topicRoutes, deps);
  app.register(subscriptionRoutes, deps);
  app.register(queueRoutes, deps);
  app.register(operationsRoutes, deps);
  app.register(tokenRoutes, deps);
  // WebSocket upgrades bypass fastify's routing and hooks; websocket.ts handles them on the server.
  attachWebSockets(app, {
    node: deps.node,
    leaderUrl: deps.leaderUrl,
    pingIntervalMs: deps.wsPingIntervalMs,
    ...(deps.auth ? { auth: deps.auth } : {}),
    ...(deps.tls?.ca ? { tlsCa: deps.tls.ca } : {}),
    ...(deps.disk ? { disk: deps.disk } : {}),
  });
  return app;
}

function isOwnClusterView(method: string, url: string): boolean {
  return method === 'GET' && (url === '/v1/cluster' || url.startsWith('/v1/cluster?'));
}

