/** Health, readiness, cluster state and metrics. */
import type { FastifyInstance } from 'fastify';
import { register } from 'prom-client';
import type { AppDeps } from '../app.js';
import { bindMetrics } from '../../metrics/registry.js';
import { AddMemberBody, MemberParams, TransferLeadershipBody } from '../schemas.js';

export async function operationsRoutes(app: FastifyInstance, { node, push }: AppDeps): Promise<void> {
  // Node's process metrics and Herald's own (src/metrics/registry.ts), all in prom-client's registry.
  bindMetrics(node, push);

  app.get('/healthz', async () => ({ ok: true }));

  // Ready: a leader is known and this node has applied everything it knows to be committed.
  app.get('/readyz', async (_req, reply) => {
    const ready = node.leaderId !== 0 && node.applied >= node.commitIndex;
    reply.status(ready ? 200 : 503);
    if (!ready) reply.header('retry-after', '1');
    return { ready, leaderId: node.leaderId ? String(node.leaderId) : null, appliedIndex: node.applied, commitIndex: node.commitIndex };
  });

  // `?digest=1` adds a hash of this node's applied broker state, so replicas can be compared.
  app.get<{ Querystring: { digest?: string } }>('/v1/cluster', async (req) => ({
    ...node.clusterStatus(),
    ...(req.query.digest === '1' ? { stateDigest: node.stateDigest() } : {}),
  }));

  // Membership changes run on the leader (followers forward them) and answer once they are committed.
  app.post<{ Body: AddMemberBody }>('/v1/cluster/members', { schema: { body: AddMemberBody } }, async (req) => {
    await node.addMember(Number(req.body.id), req.body.address);
    return node.clusterStatus();
  });

  app.delete<{ Params: { id: string } }>('/v1/cluster/members/:id', { schema: { params: MemberParams } }, async (req) => {
    await node.removeMember(Number(req.params.id));
    return node.clusterStatus();
  });

  app.post<{ Body: TransferLeadershipBody }>('/v1/cluster/transfer-leadership', { schema: { body: TransferLeadershipBody } }, async (req) => {
    await node.transferLeadership(Number(req.body.to));
    return node.clusterStatus();
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', register.contentType);
    return register.metrics();
  });
}
