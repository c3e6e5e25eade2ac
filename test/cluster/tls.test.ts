// Goal: with --tls-cert/--tls-key/--tls-ca, the client API is HTTPS only, node-to-node traffic runs over
// TLS (the group elects and replicates), a follower forwards to the leader over HTTPS and proxies
// WebSockets over wss, and a node whose certificate the CA did not sign cannot join the group.
// Method: a throwaway CA and certificates made with openssl (SAN IP:127.0.0.1) in a temp dir; a real
// 3-node cluster; clients trust the CA through an undici Agent.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'undici';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { TestCluster, api, eventually } from '../helpers/herald-process.js';
import { WsClient } from '../helpers/ws-client.js';

const dir = mkdtempSync(join(tmpdir(), 'herald-tls-'));
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`);
}
function makeCert(name: string, ca: string): void {
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.crt`, '-extfile', 'san.ext');
}

let cluster: TestCluster | undefined;
beforeAll(() => {
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1,DNS:localhost\\n" > san.ext'], { cwd: dir });
  makeCa('ca');
  makeCert('node', 'ca');
  makeCa('rogue-ca');
  makeCert('rogue', 'rogue-ca');
});
afterAll(async () => {
  await cluster?.stopAll();
  rmSync(dir, { recursive: true, force: true });
});

test('HTTPS API, Raft over TLS, forwarding and WebSocket proxying over TLS; a node with a foreign certificate stays out', async () => {
  const c = (cluster = await TestCluster.create(3));
  const tlsArgs = (name: string, ca = 'ca') => ['--tls-cert', join(dir, `${name}.crt`), '--tls-key', join(dir, `${name}.key`), '--tls-ca', join(dir, `${ca}.crt`)];
  c.extraArgs = tlsArgs('node');
  c.scheme = 'https';
  const trusting = new Agent({ connect: { ca: readFileSync(join(dir, 'ca.crt')) } });
  c.dispatcher = trusting;
  await c.startAll();
  const leader = await c.leader(); // elected over TLS
  const [f1, f2] = [...c.nodes.keys()].filter((id) => id !== leader) as [number, number];
  const call = (id: number, method: string, path: string, body?: unknown) => api(c.url(id), method, path, body, { dispatcher: trusting });

  // Through a follower: forwarded to the leader over HTTPS.
  expect((await call(f1, 'PUT', '/v1/topics/t', {})).status).toBe(201);
  expect((await call(f1, 'PUT', '/v1/subscriptions/s', { topic: 't', startAt: 'earliest' })).status).toBe(201);
  expect((await call(f2, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'secret' }] })).status).toBe(200);
  // Replicated over TLS: every node applies it.
  await eventually(async () => {
    for (const id of [1, 2, 3]) if ((await call(id, 'GET', '/v1/cluster')).body.appliedIndex < (await call(leader, 'GET', '/v1/cluster')).body.commitIndex) return false;
    return true;
  });

  // Plain HTTP on the HTTPS port gets nothing useful.
  const port = Number(new URL(c.url(f1)).port);
  const plain = await new Promise<number | string>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/topics', timeout: 3000 }, (res) => resolve(res.statusCode ?? 0));
    req.on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? 'error'));
    req.on('timeout', () => req.destroy());
    req.end();
  });
  expect(plain === 200).toBe(false);
  // A client that does not trust the CA is refused the connection.
  await expect(api(c.url(f1), 'GET', '/v1/topics')).rejects.toThrow();

  // A consumer socket through a follower: wss to the follower, proxied over wss to the leader.
  const ws = await WsClient.open(c.url(f2), '/v1/subscriptions/s/ws', { ca: readFileSync(join(dir, 'ca.crt')) });
  ws.credit(5);
  await eventually(() => ws.all.some((f) => f.type === 'message' && f.data === 'secret'));
  ws.ws.close();

  // Node 3 restarted with a certificate from another CA: its peers refuse it and it never sees a leader.
  const outsider = [1, 2, 3].find((id) => id !== leader)!;
  await c.kill(outsider);
  await c.start(outsider, c.peersArg(), tlsArgs('rogue', 'ca'));
  // (Its own API uses the rogue certificate: this check trusts anything.)
  const insecure = new Agent({ connect: { rejectUnauthorized: false } });
  // Several election timeouts: it never hears from a leader (mutual TLS: each side refuses the other).
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    const v = await api(c.url(outsider), 'GET', '/v1/cluster', undefined, { dispatcher: insecure });
    expect(v.status).toBe(200);
    expect(v.body.leaderId).toBeNull();
    await new Promise((r) => setTimeout(r, 200));
  }
  // The other two go on.
  expect((await call(leader, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'still' }] })).status).toBe(200);
}, 90_000);
