/** Queues: a topic and a pull subscription of the same name, created and used together. */
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../app.js';
import { queueConfigs } from '../normalize.js';
import { NameParams, PublishBody, QueueBody } from '../schemas.js';
import { expectOk } from './common.js';
import { publish, topicInfoOr404 } from './topics.js';
import { registerConsumerRoutes, subscriptionInfoOr404, withNewSecret } from './subscriptions.js';
import { generateSecret } from '../../delivery/webhook-signature.js';
import type { PushDispatcher } from '../../delivery/push-dispatcher.js';
import type { HeraldNode } from '../../runtime/herald-node.js';

type NameReq = { Params: { name: string } };

function queueInfo(node: HeraldNode, name: string, push?: PushDispatcher) {
  return { topic: topicInfoOr404(node, name), subscription: subscriptionInfoOr404(node, name, push) };
}

export async function queueRoutes(app: FastifyInstance, { node, pull, push, disk, allowPrivateWebhooks }: AppDeps): Promise<void> {
  const opts = { allowPrivateWebhooks: allowPrivateWebhooks ?? false };
  app.put<NameReq & { Body: QueueBody | undefined }>(
    '/v1/queues/:name',
    { schema: { params: NameParams, body: QueueBody } },
    async (req, reply) => {
      const { topic, subscription } = queueConfigs(req.params.name, req.body, opts);
      const secret = subscription.push ? generateSecret() : undefined;
      const r = expectOk<{ ok: true; created: boolean }>(
        await node.propose({ type: 'create-queue', name: req.params.name, topic, subscription, ...(secret ? { secret } : {}) }),
      );
      reply.status(r.created ? 201 : 200);
      return withNewSecret(node, req.params.name, r.created ? secret : undefined, queueInfo(node, req.params.name, push));
    },
  );

  app.get<NameReq>('/v1/queues/:name', { schema: { params: NameParams } }, async (req) => queueInfo(node, req.params.name, push));

  app.delete<NameReq>('/v1/queues/:name', { schema: { params: NameParams } }, async (req) => {
    expectOk(await node.propose({ type: 'delete-topic', name: req.params.name }));
    return {};
  });

  app.post<NameReq & { Body: PublishBody }>(
    '/v1/queues/:name/messages',
    { schema: { params: NameParams, body: PublishBody } },
    async (req) => publish(node, req.params.name, req.body, req.jsonWithoutEscapes, disk),
  );

  registerConsumerRoutes(app, '/v1/queues/:name', node, pull);
}
