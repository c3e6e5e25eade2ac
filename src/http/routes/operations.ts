/** Health, readiness, cluster state and metrics. */
import type { FastifyInstance } from 'fastify';
import { register, collectDefaultMetrics } from 'prom-client';
import type { AppDeps } from '../app.js';

let defaultMetricsStarted = false;

export async function operationsRoutes(app: FastifyInstance, { node }: AppDeps): Promise<void> {
  if (!defaultMetricsStarted) {
    collectDefaultMetrics({ prefix: 'herald_' });
    defaultMetricsStarted = true;
  }

  app.get('/healthz', async () => ({ ok: true }));

  // One node is its own leader; it is ready once it has replayed its log (before it listens).
  app.get('/readyz', async () => ({ ready: true, appliedIndex: node.applied, commitIndex: node.commitIndex }));

  app.get('/v1/cluster', async () => ({
    nodeId: '1',
    leaderId: '1',
    term: node.term,
    commitIndex: node.commitIndex,
    appliedIndex: node.applied,
    members: [{ id: '1', address: 'local', role: 'leader', matchIndex: node.commitIndex }],
  }));

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', register.contentType);
    return register.metrics();
  });
}
