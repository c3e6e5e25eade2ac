/** Topics: create, read, change, delete, list, publish. */
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../app.js';
import { HeraldError } from '../errors.js';
import { publishItems, topicConfig, topicPatch } from '../normalize.js';
import { renderTopic } from '../render.js';
import { NameParams, PublishBody, TopicConfigBody } from '../schemas.js';
import { expectOk } from './common.js';
import type { PublishResult } from '../../core/broker/machine.js';
import type { HeraldNode } from '../../runtime/herald-node.js';
import type { DiskGuard } from '../../runtime/disk-guard.js';
import { notePublished } from '../../metrics/registry.js';

type NameReq = { Params: { name: string } };

export function topicInfoOr404(node: HeraldNode, name: string) {
  const info = node.machine.topicInfo(name);
  if (!info) throw new HeraldError('TopicNotFound', `topic ${name} not found`);
  return renderTopic(info);
}

/**
 * Publishes a validated batch; shared by topics and queues. `withoutEscapes`: the request's JSON had
 * no backslash (see json-body.ts), so no message needs checking for what JSON escapes.
 */
export async function publish(node: HeraldNode, topic: string, body: PublishBody, withoutEscapes: boolean, disk?: DiskGuard): Promise<{ results: PublishResult[] }> {
  const config = node.machine.topicConfig(topic);
  if (!config) throw new HeraldError('TopicNotFound', `topic ${topic} not found`);
  const full = disk?.full;
  if (full) throw new HeraldError('Unavailable', `storage is full: ${full}; publishing resumes when space returns`, 5);
  const startedMs = performance.now();
  const messages = publishItems(body, config.maxMessageBytes, withoutEscapes);
  const reply = expectOk<{ ok: true; results: PublishResult[] }>(await node.propose({ type: 'publish', topic, messages }));
  notePublished(topic, messages, reply.results, startedMs);
  return { results: reply.results };
}

export async function topicRoutes(app: FastifyInstance, { node, disk }: AppDeps): Promise<void> {
  app.put<NameReq & { Body: TopicConfigBody | undefined }>(
    '/v1/topics/:name',
    { schema: { params: NameParams, body: TopicConfigBody } },
    async (req, reply) => {
      const r = expectOk<{ ok: true; created: boolean }>(
        await node.propose({ type: 'create-topic', name: req.params.name, config: topicConfig(req.body) }),
      );
      reply.status(r.created ? 201 : 200);
      return topicInfoOr404(node, req.params.name);
    },
  );

  app.get('/v1/topics', async () => ({
    topics: node.machine.topicNames().map((n) => renderTopic(node.machine.topicInfo(n)!)),
  }));

  app.get<NameReq>('/v1/topics/:name', { schema: { params: NameParams } }, async (req) => topicInfoOr404(node, req.params.name));

  app.patch<NameReq & { Body: TopicConfigBody }>(
    '/v1/topics/:name',
    { schema: { params: NameParams, body: TopicConfigBody } },
    async (req) => {
      expectOk(await node.propose({ type: 'update-topic', name: req.params.name, patch: topicPatch(req.body) }));
      return topicInfoOr404(node, req.params.name);
    },
  );

  app.delete<NameReq>('/v1/topics/:name', { schema: { params: NameParams } }, async (req) => {
    expectOk(await node.propose({ type: 'delete-topic', name: req.params.name }));
    return {};
  });

  app.post<NameReq & { Body: PublishBody }>(
    '/v1/topics/:name/messages',
    { schema: { params: NameParams, body: PublishBody } },
    async (req) => publish(node, req.params.name, req.body, req.jsonWithoutEscapes, disk),
  );
}
