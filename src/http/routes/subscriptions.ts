/** Subscriptions: create, read, change, delete, list, and the consumer verbs (pull, ack, nack, ...). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Delivery } from '../../core/broker/machine.js';
import type { HeraldNode } from '../../runtime/herald-node.js';
import type { PullService } from '../../delivery/pull-waiters.js';
import type { PushDispatcher } from '../../delivery/push-dispatcher.js';
import { generateSecret } from '../../delivery/webhook-signature.js';
import { limits } from '../../core/limits.js';
import type { AppDeps } from '../app.js';
import { HeraldError } from '../errors.js';
import { parseTime, subscriptionConfig, subscriptionPatch } from '../normalize.js';
import { pullResponseBody, renderSubscription } from '../render.js';
import {
  AckBody,
  AttemptsQuery,
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
import { countSettled, noteDeliveries } from '../../metrics/registry.js';

type NameReq = { Params: { name: string } };

export function subscriptionInfoOr404(node: HeraldNode, name: string, push?: PushDispatcher) {
  const info = node.machine.subscriptionInfo(name, node.now());
  if (!info) throw new HeraldError('SubscriptionNotFound', `subscription ${name} not found`);
  return renderSubscription(info, info.config.push ? push?.pushState(name) : undefined);
}

/**
 * A create or PATCH that sets up push carries a fresh secret; the answer shows it only if this call
 * is the one that gave the subscription its secret (API.md: "returned once").
 */
export function withNewSecret<T extends object>(node: HeraldNode, name: string, secret: string | undefined, body: T): T & { secret?: string } {
  if (secret === undefined || node.machine.pushSecrets(name, node.now())[0] !== secret) return body;
  return { ...body, secret };
}

type CountReply = { ok: true; count: number; invalid: string[] };

/** Acks through the log (the ack route's, and those a pull carries), counted for the metrics. */
async function proposeAck(node: HeraldNode, subscription: string, ackIds: string[]): Promise<CountReply> {
  return expectOk<CountReply>(await countSettled('pull', subscription, 'acked', node.propose({ type: 'ack', subscription, ackIds })));
}

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
      // Acks carried by the pull go into the log first, in the same write as the pull's lease (both
      // are proposed in this turn): one round trip where an ack and a pull would take two.
      const acking = body.ackIds ? proposeAck(node, name, body.ackIds) : undefined;
      acking?.catch(() => {}); // awaited below; a pull that throws first must not leave it unhandled
      const gone = new AbortController();
      const onClose = () => gone.abort();
      if (isGone(req)) gone.abort();
      else req.raw.socket.once('close', onClose);
      let deliveries: Delivery[];
      try {
        deliveries = await pull.pull(
          name,
          body.max ?? 10,
          Math.round((body.waitSeconds ?? 0) * 1000),
          (body.ackDeadlineSeconds ?? config.ackDeadlineSeconds) * 1000,
          gone.signal,
        );
      } finally {
        req.raw.socket?.off('close', onClose);
      }
      const ackIds = deliveries.map((d) => d.ackId);
      let acked: CountReply | undefined;
      try {
        acked = await acking;
      } catch (error) {
        if (ackIds.length > 0) pull.release(name, ackIds);
        throw error;
      }
      if (ackIds.length > 0) {
        // The client may have left while the lease was being committed: give the messages back at
        // once rather than let them wait out the ack deadline with nobody holding them.
        if (isGone(req)) {
          pull.release(name, ackIds);
          return reply.type('application/json; charset=utf-8').send(pullResponseBody([], acked));
        }
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) pull.release(name, ackIds);
        });
        noteDeliveries('pull', name, 'sent', deliveries.length);
      }
      // Written out directly (the schema's serializer costs several µs per 1 KiB message).
      return reply.type('application/json; charset=utf-8').send(pullResponseBody(deliveries, acked));
    },
  );

  app.post<NameReq & { Body: AckBody }>(`${prefix}/ack`, { schema: { params: NameParams, body: AckBody } }, async (req) => {
    const r = await proposeAck(node, req.params.name, req.body.ackIds);
    return { acked: r.count, invalid: r.invalid };
  });

  app.post<NameReq & { Body: NackBody }>(`${prefix}/nack`, { schema: { params: NameParams, body: NackBody } }, async (req) => {
    const delayMs = req.body.delaySeconds === undefined ? null : req.body.delaySeconds * 1000;
    const r = expectOk<CountReply>(
      await countSettled('pull', req.params.name, 'nacked', node.propose({ type: 'nack', subscription: req.params.name, ackIds: req.body.ackIds, delayMs })),
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

export async function subscriptionRoutes(app: FastifyInstance, { node, pull, push, allowPrivateWebhooks }: AppDeps): Promise<void> {
  const opts = { allowPrivateWebhooks: allowPrivateWebhooks ?? false };
  app.put<NameReq & { Body: SubscriptionBody }>(
    '/v1/subscriptions/:name',
    { schema: { params: NameParams, body: SubscriptionBody } },
    async (req, reply) => {
      const { topic, ...rest } = req.body;
      const config = subscriptionConfig(rest, topic, opts);
      const secret = config.push ? generateSecret() : undefined;
      const r = expectOk<{ ok: true; created: boolean }>(
        await node.propose({ type: 'create-subscription', name: req.params.name, config, ...(secret ? { secret } : {}) }),
      );
      reply.status(r.created ? 201 : 200);
      return withNewSecret(node, req.params.name, r.created ? secret : undefined, subscriptionInfoOr404(node, req.params.name, push));
    },
  );

  app.get<{ Querystring: { topic?: string } }>('/v1/subscriptions', { schema: { querystring: ListSubscriptionsQuery } }, async (req) => {
    const topic = req.query.topic;
    if (topic !== undefined && !node.machine.topicInfo(topic)) throw new HeraldError('TopicNotFound', `topic ${topic} not found`);
    return { subscriptions: node.machine.subscriptionNames(topic).map((n) => subscriptionInfoOr404(node, n, push)) };
  });

  app.get<NameReq>('/v1/subscriptions/:name', { schema: { params: NameParams } }, async (req) =>
    subscriptionInfoOr404(node, req.params.name, push),
  );

  app.patch<NameReq & { Body: SubscriptionPatchBody }>(
    '/v1/subscriptions/:name',
    { schema: { params: NameParams, body: SubscriptionPatchBody } },
    async (req) => {
      const config = node.machine.subscriptionConfig(req.params.name);
      if (!config) throw new HeraldError('SubscriptionNotFound', `subscription ${req.params.name} not found`);
      const patch = subscriptionPatch(req.body, config.topic, opts);
      const secret = patch.push && node.machine.pushSecrets(req.params.name, node.now()).length === 0 ? generateSecret() : undefined;
      expectOk(await node.propose({ type: 'update-subscription', name: req.params.name, patch, ...(secret ? { secret } : {}) }));
      return withNewSecret(node, req.params.name, secret, subscriptionInfoOr404(node, req.params.name, push));
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

  app.post<NameReq>('/v1/subscriptions/:name/rotate-secret', { schema: { params: NameParams } }, async (req) => {
    const secret = generateSecret();
    expectOk(await node.propose({ type: 'rotate-secret', subscription: req.params.name, secret }));
    return { secret };
  });

  app.post<NameReq>('/v1/subscriptions/:name/resume', { schema: { params: NameParams } }, async (req) => {
    expectOk(await node.propose({ type: 'resume-push', subscription: req.params.name }));
    return subscriptionInfoOr404(node, req.params.name, push);
  });

  app.get<NameReq & { Querystring: { limit?: string } }>(
    '/v1/subscriptions/:name/attempts',
    { schema: { params: NameParams, querystring: AttemptsQuery } },
    async (req) => {
      const limit = req.query.limit === undefined ? 50 : Number(req.query.limit);
      if (limit < 1 || limit > limits.pushAttemptsListMax) {
        throw new HeraldError('InvalidRequest', `limit must be 1–${limits.pushAttemptsListMax}`);
      }
      if (!node.machine.subscriptionConfig(req.params.name)) {
        throw new HeraldError('SubscriptionNotFound', `subscription ${req.params.name} not found`);
      }
      return { attempts: push?.attempts(req.params.name, limit) ?? [] };
    },
  );

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
