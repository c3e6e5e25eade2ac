/** API tokens (admin only): create (the token is shown once), list, revoke. */
import type { FastifyInstance } from 'fastify';
import type { TokenRecord } from '../../core/broker/tokens.js';
import { limits } from '../../core/limits.js';
import type { AppDeps } from '../app.js';
import { newToken } from '../auth.js';
import { CreateTokenBody, TokenParams } from '../schemas.js';
import { expectOk } from './common.js';

function renderToken(t: TokenRecord) {
  return {
    id: t.id,
    name: t.name,
    scopes: t.scopes,
    rateLimitPerSecond: t.rateLimitPerSecond ?? limits.tokenRateLimitPerSecondDefault,
    webSocketsMax: t.webSocketsMax ?? limits.tokenWebSocketsDefault,
    createdAt: new Date(t.createdAtMs).toISOString(),
  };
}

export async function tokenRoutes(app: FastifyInstance, { node }: AppDeps): Promise<void> {
  app.post<{ Body: CreateTokenBody }>('/v1/tokens', { schema: { body: CreateTokenBody } }, async (req, reply) => {
    const { record, token } = newToken(req.body.name ?? '', [...new Set(req.body.scopes)]);
    record.rateLimitPerSecond = req.body.rateLimitPerSecond ?? limits.tokenRateLimitPerSecondDefault;
    record.webSocketsMax = req.body.webSocketsMax ?? limits.tokenWebSocketsDefault;
    expectOk(await node.propose({ type: 'create-token', token: record }));
    reply.status(201);
    return { ...renderToken(node.machine.token(record.id)!), token };
  });

  app.get('/v1/tokens', async () => ({ tokens: node.machine.tokenList().map(renderToken) }));

  app.delete<{ Params: { id: string } }>('/v1/tokens/:id', { schema: { params: TokenParams } }, async (req) => {
    expectOk(await node.propose({ type: 'revoke-token', id: req.params.id }));
    return {};
  });
}
