/**
 * `npm run cluster -- --nodes 3 --base-port 8080 --data ./cluster`: a local cluster on loopback, each
 * node its own OS process. Node i serves HTTP on base-port + i − 1 and Raft on base-port + 1000 + i − 1,
 * with data under <data>/node-i. When a node dies the others go on; with --restart it is started again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { nodeProcessEnv } from './runtime/process-env.js';

function int(min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`an integer ${min}–${max}`);
    return n;
  };
}

const program = new Command('herald-cluster')
  .option('--nodes <n>', 'number of nodes (1, 3 or 5 make sense)', int(1, 9), 3)
  .option('--base-port <port>', 'HTTP port of node 1', int(1, 64000), 8080)
  .option('--data <dir>', 'data directory (node i uses <data>/node-i)', './cluster')
  .option('--host <host>', 'address every node listens on', '127.0.0.1')
  .option('--restart', 'start a node again when it dies', false)
  .option('--cluster-secret <secret>', 'shared secret (default: HERALD_CLUSTER_SECRET or a random one)');
program.parse(process.argv.slice(2), { from: 'user' });
const o = program.opts<{ nodes: number; basePort: number; data: string; host: string; restart: boolean; clusterSecret?: string }>();

const secret = o.clusterSecret ?? process.env.HERALD_CLUSTER_SECRET ?? randomBytes(24).toString('base64url');
const ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
const httpPort = (id: number) => o.basePort + id - 1;
const raftPort = (id: number) => o.basePort + 1000 + id - 1;
const peers = ids.map((id) => `${id}@${o.host}:${raftPort(id)}:${httpPort(id)}`).join(',');
// Bundled beside main.js by `npm run build` (dist/), or run from src/ with tsx.
const here = import.meta.dirname;
const mainScript = join(here, here.endsWith('dist') ? 'main.js' : 'main.ts');
const runner = here.endsWith('dist') ? ['--enable-source-maps', '--expose-gc'] : [join(resolve(here, '..'), 'node_modules/tsx/dist/cli.mjs')];
const children = new Map<number, ChildProcess>();
let stopping = false;

function start(id: number): void {
  const child = spawn(
    process.execPath,
    [...runner, mainScript, '--node-id', String(id), '--host', o.host, '--port', String(httpPort(id)),
      '--raft-port', String(raftPort(id)), '--peers', peers, '--data', join(o.data, `node-${id}`)],
    { env: { ...process.env, ...nodeProcessEnv, HERALD_CLUSTER_SECRET: secret }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.set(id, child);
  const prefix = (chunk: Buffer) => chunk.toString().replace(/^(?=.)/gm, `[node ${id}] `);
  child.stdout!.on('data', (c: Buffer) => process.stdout.write(prefix(c)));
  child.stderr!.on('data', (c: Buffer) => process.stderr.write(prefix(c)));
  child.on('exit', (code, signal) => {
    children.delete(id);
    if (stopping) return;
    console.log(`[cluster] node ${id} exited (${signal ?? code})${o.restart ? '; restarting' : ''}`);
    if (o.restart) setTimeout(() => start(id), 500);
  });
}

for (const id of ids) start(id);
console.log(`[cluster] ${o.nodes} nodes: HTTP ${ids.map(httpPort).join(', ')}; Raft ${ids.map(raftPort).join(', ')}; data ${o.data}`);

function stop(): void {
  if (stopping) return;
  stopping = true;
  for (const c of children.values()) c.kill('SIGTERM');
  const check = setInterval(() => {
    if (children.size === 0) {
      clearInterval(check);
      process.exit(0);
    }
  }, 50);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
