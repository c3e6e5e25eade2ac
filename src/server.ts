/** Starts one node: storage, the driver, delivery and the HTTP API, and stops them in order. */
import { mkdirSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { HeraldNode } from './runtime/herald-node.js';
import { PullService } from './delivery/pull-waiters.js';
import { buildApp } from './http/app.js';
import type { NodeConfig } from './config.js';

export interface RunningServer {
  app: FastifyInstance;
  node: HeraldNode;
  url: string;
  close(): Promise<void>;
}

export async function startServer(config: NodeConfig): Promise<RunningServer> {
  mkdirSync(config.dataDir, { recursive: true });
  const node = new HeraldNode({
    dataDir: config.dataDir,
    ...(config.snapshotEntries !== undefined ? { snapshotEntriesInterval: config.snapshotEntries } : {}),
  });
  const pull = new PullService(node);
  const app = buildApp({ node, pull });
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  return {
    app,
    node,
    url,
    async close() {
      await app.close();
      await node.close();
    },
  };
}
