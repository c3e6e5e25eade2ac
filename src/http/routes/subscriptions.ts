/** Subscriptions: create, read, change, delete, list, and the consumer verbs (pull, ack, nack, ...). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Delivery } from '../../core/broker/machine.js';
import type { HeraldNode } from '../../runtime/herald-node.js';
import type { PullService } from '../../delivery/pull-waiters.js';
import type { AppDeps } from '../app.js';
import { HeraldError } from '../errors.js';
import { parseTime, subscriptionConfig, subscriptionPatch } from '../normalize.js';
import { renderDelivery, renderSubscription } from '../render.js';
import {
  AckBody,
  ListSubscriptionsQuery,
  ModifyAckDeadlineBody,
  NackBody,
  NameParams,
  PullBody,
  PullResponse,
  RedriveBody,
  SeekBody,
  SubscriptionBody,
  SubscriptionPatchBody,
} from '../schemas.js';
import { expectOk } from './common.js';

type NameReq = { Params: { name: string } };

export function subscriptionInfoOr404(node: HeraldNode, name: string) {
  const info = node.machine.subscriptionInfo(name, node.now());
  if (!info) throw new HeraldError('SubscriptionNotFound', `subscription ${name} not found`);
  return renderSubscription(info);
}

type CountReply = { ok: true; count: number; invalid: string[] };

/**
 * The consumer verbs, registered under a prefix (`/v1/subscriptions/:name` and `/v1/queues/:name`).
 * Bodies are optional where every field is.
 */
export function registerConsumerRoutes(app: FastifyInstance, prefix: string, node: HeraldNode, pull: PullService): void {
  app.post<NameReq & { Body: PullBody | undefined }>(
    `${prefix}/pull`,
    { schema: { params: NameParams, body: PullBody, response: { 200: PullResponse } } },
    async (req, reply) => {
      const name = req.params.name;
      const config = node.machine.subscriptionConfig(name);
      if (!config) throw new HeraldError('SubscriptionNotFound', `subscription ${name} not found`);
      const body = req.body ?? {};
      const deliveries: Delivery[] = await pull.pull(
        name,
        body.max ?? 10,
        Math.round((body.waitSeconds ?? 0) * 1000),
        (body.ackDeadlineSeconds ?? config.ackDeadlineSeconds) * 1000,
        () => isGone(req),
      );
      if (deliveries.length > 0) {
        // The client may have left while the lease was being committed: give the messages back at
        // once rather than let them wait out the ack deadline with nobody holding them.
        const ackIds = deliveries.map((d) => d.ackId);
        if (isGone(req)) {
          pull.release(name, ackIds);
          return { messages: [] };
        }
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) pull.release(name, ackIds);
        });
      }
      return { messages: deliveries.map(renderDelivery) };
    },
  );

  app.post<NameReq & { Body: AckBody }>(`${prefix}/ack`, { schema: { params: NameParams, body: AckBody } }, async (req) => {
    const r = expectOk<CountReply>(await node.propose({ type: 'ack', subscription: req.params.name, ackIds: req.body.ackIds }));
    return { acked: r.count, invalid: r.invalid };
  });

  app.post<NameReq & { Body: NackBody }>(`${prefix}/nack`, { schema: { params: NameParams, body: NackBody } }, async (req) => {
    const delayMs = req.body.delaySeconds === undefined ? null : req.body.delaySeconds * 1000;
    const r = expectOk<CountReply>(
      await node.propose({ type: 'nack', subscription: req.params.name, ackIds: req.body.ackIds, delayMs }),
    );
    return { nacked: r.count, invalid: r.invalid };
  });

  app.post<NameReq & { Body: ModifyAckDeadlineBody }>(
    `${prefix}/modify-ack-deadline`,
    { schema: { params: NameParams, body: ModifyAckDeadlineBody } },
    async (req) => {
      const r = expectOk<CountReply>(
        await node.propose({
          type: 'modify-ack-deadline',
          subscription: req.params.name,
          ackIds: req.body.ackIds,
          deadlineMs: req.body.seconds * 1000,
        }),
      );
      return { modified: r.count, invalid: r.invalid };
    },
  );
}

/** Whether the client of a long poll has gone away: then nothing should be leased for it. */
function isGone(req: FastifyRequest): boolean {
  // Not `req.raw.destroyed`: a request stream is destroyed once its body has been read.
  return req.raw.socket?.destroyed ?? true;
}

export async function subscriptionRoutes(app: FastifyInstance, { node, pull, allowPrivateWebhooks }: AppDeps): Promise<void> {
  const opts = { allowPrivateWebhooks: allowPrivateWebhooks ?? false };
  app.put<NameReq & { Body: SubscriptionBody }>(
    '/v1/subscriptions/:name',
    { schema: { params: NameParams, body: SubscriptionBody } },
    async (req, reply) => {
      const { topic, ...rest } = req.body;
      const r = expectOk<{ ok: true; created: boolean }>(
        await node.propose({ type: 'create-subscription', name: req.params.name, config: subscriptionConfig(rest, topic, opts) }),
      );
      reply.status(r.created ? 201 : 200);
      return subscriptionInfoOr404(node, req.params.name);
    },
  );

  app.get<{ Querystring: { topic?: string } }>('/v1/subscriptions', { schema: { querystring: ListSubscriptionsQuery } }, async (req) => {
    const topic = req.query.topic;
    if (topic !== undefined && !node.machine.topicInfo(topic)) throw new HeraldError('TopicNotFound', `topic ${topic} not found`);
    return { subscriptions: node.machine.subscriptionNames(topic).map((n) => subscriptionInfoOr404(node, n)) };
  });

  app.get<NameReq>('/v1/subscriptions/:name', { schema: { params: NameParams } }, async (req) =>
    subscriptionInfoOr404(node, req.params.name),
  );

  app.patch<NameReq & { Body: SubscriptionPatchBody }>(
    '/v1/subscriptions/:name',
    { schema: { params: NameParams, body: SubscriptionPatchBody } },
    async (req) => {
      const config = node.machine.subscriptionConfig(req.params.name);
      if (!config) throw new HeraldError('SubscriptionNotFound', `subscription ${req.params.name} not found`);
      expectOk(
        await node.propose({ type: 'update-subscription', name: req.params.name, patch: subscriptionPatch(req.body, config.topic, opts) }),
      );
      return subscriptionInfoOr404(node, req.params.name);
    },
  );

  app.delete<NameReq>('/v1/subscriptions/:name', { schema: { params: NameParams } }, async (req) => {
    expectOk(await node.propose({ type: 'delete-subscription', name: req.params.name }));
    return {};
  });

  registerConsumerRoutes(app, '/v1/subscriptions/:name', node, pull);

  app.post<NameReq & { Body: SeekBody }>('/v1/subscriptions/:name/seek', { schema: { params: NameParams, body: SeekBody } }, async (req) => {
    const target = 'seq' in req.body ? { seq: req.body.seq } : { timeMs: parseTime(req.body.time, 'time') };
    expectOk(await node.propose({ type: 'seek', subscription: req.params.name, target }));
    return {};
  });

  app.post<NameReq & { Body: RedriveBody | undefined }>(
    '/v1/subscriptions/:name/redrive',
    { schema: { params: NameParams, body: RedriveBody } },
    async (req) => {
      const r = expectOk<{ ok: true; redriven: number }>(
        await node.propose({ type: 'redrive', subscription: req.params.name, max: req.body?.max ?? 1000 }),
      );
      return { redriven: r.redriven };
    },
  );
}
