// Goal: Herald's metrics, dashboards and alert rules work against a real Prometheus: /metrics passes
// `promtool check metrics`, the alert rules pass `promtool check rules` and their unit tests, the
// example config passes `promtool check config`, and every expression of every Grafana panel and
// every alert rule parses and returns series from a live cluster (a panel with no data fails).
// Method: 3 real node processes (TestCluster) under light, steady load: publishes, HTTP pull with
// acks and a nack now and then, a webhook subscription to a local receiver that fails one request in
// four, a WebSocket consumer through a follower (proxied) and a topic tail. Debian's prometheus
// scrapes the three nodes every second with grafana/prometheus/herald-alerts.yml loaded; the test
// polls it (with a deadline) until every query has data, substituting the dashboards' template
// variables with `.*` and Grafana's intervals with fixed ones. Alert expressions are also evaluated
// in their `bool` form, which returns the series they look at whether or not the alert would fire.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { apiOk, eventually, TestCluster } from '../helpers/herald-process.js';
import { promtool, requireBinary, TestPrometheus, withBool } from '../helpers/prometheus.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';
import { WsClient } from '../helpers/ws-client.js';
import { call } from '../cluster/util.js';

const root = resolve(import.meta.dirname, '../..');
const dashboardsDir = join(root, 'grafana/dashboards');
const prometheusDir = join(root, 'grafana/prometheus');
const alertNames = [
  'HeraldNoLeader',
  'HeraldNodeDown',
  'HeraldBacklogGrowing',
  'HeraldOldestUnackedMessage',
  'HeraldWebhookEndpointFailing',
  'HeraldDiskFilling',
  'HeraldStorageWritesFailing',
];
/** Every metric family Herald exports, as README's metric list gives them. */
const heraldMetrics = [
  'herald_build_info',
  'herald_published_messages_total',
  'herald_published_bytes_total',
  'herald_publish_duration_seconds',
  'herald_deliveries_total',
  'herald_publish_to_ack_seconds',
  'herald_topics',
  'herald_subscriptions',
  'herald_topic_retained_messages',
  'herald_topic_retained_bytes',
  'herald_subscription_backlog_messages',
  'herald_subscription_in_flight_messages',
  'herald_subscription_oldest_unacked_age_seconds',
  'herald_subscription_dead_lettered_messages',
  'herald_webhook_requests_total',
  'herald_webhook_request_duration_seconds',
  'herald_webhook_circuit_state',
  'herald_pull_waiting_requests',
  'herald_websocket_connections',
  'herald_websocket_connections_opened_total',
  'herald_http_request_duration_seconds',
  'herald_raft_node_id',
  'herald_raft_term',
  'herald_raft_is_leader',
  'herald_raft_leader_id',
  'herald_raft_commit_index',
  'herald_raft_applied_index',
  'herald_raft_snapshot_index',
  'herald_raft_log_entries',
  'herald_raft_last_log_index',
  'herald_raft_proposals_waiting',
  'herald_raft_members',
  'herald_raft_follower_lag_entries',
  'herald_raft_leader_changes_total',
  'herald_raft_snapshots_total',
  'herald_raft_append_duration_seconds',
  'herald_raft_appended_entries_total',
  'herald_raft_appended_bytes_total',
  'herald_storage_fsync_duration_seconds',
  'herald_storage_write_failures_total',
  'herald_lmdb_size_bytes',
  'herald_segment_files',
  'herald_segment_size_bytes',
  'herald_data_filesystem_avail_bytes',
  'herald_data_filesystem_size_bytes',
];

/** Grafana's variables as the test fills them: every template variable matches all. */
const substitutions: Record<string, string> = {
  __rate_interval: '20s',
  __interval: '5s',
  __range: '1m',
  node: '.*',
  topic: '.*',
  subscription: '.*',
};

function substitute(expr: string): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => {
    const v = substitutions[name];
    if (v === undefined) throw new Error(`unknown variable ${whole} in ${expr}`);
    return v;
  });
}

interface Panel {
  id: number;
  type: string;
  title: string;
  panels?: Panel[];
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
  datasource?: { uid: string };
  gridPos?: { h: number; w: number; x: number; y: number };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string | { query: string }; allValue?: string }[] };
}

const dashboards = readdirSync(dashboardsDir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, dashboard: JSON.parse(readFileSync(join(dashboardsDir, f), 'utf8')) as Dashboard }));

function panelsOf(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
}

let cluster: TestCluster | undefined;
let rx: WebhookReceiver | undefined;
let prom: TestPrometheus | undefined;
const sockets: WsClient[] = [];
let loadStopped = false;
let load: Promise<void> | undefined;
let leader = 0;

beforeAll(async () => {
  requireBinary('prometheus');
  requireBinary('promtool');
  const c = (cluster = await TestCluster.create(3));
  c.extraArgs = ['--allow-private-webhooks'];
  await c.startAll();
  leader = await c.leader(15_000);
  const [f1, f2] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
  // Every fourth webhook request fails: failures and successes both show, and never five in a row
  // (which would open the circuit and stop the pushes).
  rx = await WebhookReceiver.start((_r, i) => ({ status: i % 4 === 3 ? 500 : 200 }));

  const base = c.url(f1);
  await apiOk(base, 'PUT', '/v1/topics/orders', {});
  await apiOk(base, 'PUT', '/v1/subscriptions/orders-pull', { topic: 'orders', ackDeadlineSeconds: 30 });
  await apiOk(base, 'PUT', '/v1/subscriptions/orders-ws', { topic: 'orders', ackDeadlineSeconds: 30 });
  await apiOk(base, 'PUT', '/v1/subscriptions/orders-push', {
    topic: 'orders',
    push: { url: `${rx.url}/hook`, maxInFlight: 4, timeoutMs: 2000 },
    retry: { policy: 'fixed', intervalMs: 200, maxAttempts: null },
  });
  await apiOk(base, 'PUT', '/v1/queues/jobs', {});

  // A WebSocket consumer on a follower (proxied to the leader) that acks what it gets, and a tail.
  const consumer = await WsClient.open(c.url(f2), '/v1/subscriptions/orders-ws/ws');
  consumer.ws.on('message', (data) => {
    const f = JSON.parse(data.toString()) as { type: string; ackId?: string };
    if (f.type === 'message') {
      consumer.ack([f.ackId!]);
      consumer.credit(1);
    }
  });
  consumer.credit(100);
  sockets.push(consumer, await WsClient.open(c.url(f1), '/v1/topics/orders/ws'));

  load = runLoad(c);
  prom = await TestPrometheus.start(
    [1, 2, 3].map((id) => c.url(id).replace('http://', '')),
    [join(prometheusDir, 'herald-alerts.yml')],
  );
}, 60_000);

afterAll(async () => {
  loadStopped = true;
  await load;
  for (const s of sockets) s.ws.terminate();
  await prom?.stop();
  await rx?.close();
  await cluster?.stopAll();
});

/** Light, steady load until the test ends: a batch of 10 every ~50 ms, each pulled and acked (one nack in 20 batches). */
async function runLoad(c: TestCluster): Promise<void> {
  for (let round = 0; !loadStopped; round++) {
    const node = c.url(((round % 3) + 1) as number);
    const messages = Array.from({ length: 10 }, (_, i) => ({ data: `m${round}-${i}`, attributes: { round: String(round) } }));
    await call(node, 'POST', '/v1/topics/orders/messages', { messages }, 3000);
    await call(node, 'POST', '/v1/queues/jobs/messages', { messages: messages.slice(0, 2) }, 3000);
    for (const sub of ['/v1/subscriptions/orders-pull', '/v1/queues/jobs']) {
      const pulled = await call(node, 'POST', `${sub}/pull`, { max: 50 }, 3000);
      const ackIds: string[] = (pulled.body?.messages ?? []).map((m: { ackId: string }) => m.ackId);
      if (ackIds.length === 0) continue;
      if (round % 20 === 0) {
        await call(node, 'POST', `${sub}/nack`, { ackIds: ackIds.slice(0, 1), delaySeconds: 0 }, 3000);
        ackIds.shift();
      }
      if (ackIds.length > 0) await call(node, 'POST', `${sub}/ack`, { ackIds }, 3000);
    }
    // A 404 now and then, so error statuses show too.
    if (round % 10 === 0) await call(node, 'GET', '/v1/topics/missing', undefined, 3000);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the alert rules and the example config pass promtool, and the rule unit tests show each alert firing', () => {
  const rules = promtool(['check', 'rules', 'herald-alerts.yml'], { cwd: prometheusDir });
  expect(rules.status, rules.output).toBe(0);
  expect(rules.output).toContain(`SUCCESS: ${alertNames.length} rules found`);
  const unit = promtool(['test', 'rules', 'herald-alerts.test.yml'], { cwd: prometheusDir });
  expect(unit.status, unit.output).toBe(0);
  const tests = readFileSync(join(prometheusDir, 'herald-alerts.test.yml'), 'utf8');
  for (const name of alertNames) expect(tests, `a unit test makes ${name} fire`).toMatch(new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
  const config = promtool(['check', 'config', 'prometheus.yml'], { cwd: prometheusDir });
  expect(config.status, config.output).toBe(0);
});

test('the dashboards are well formed: variables node, topic and subscription, unique panel ids, one data source variable', () => {
  expect(dashboards.map((d) => d.dashboard.uid).sort()).toEqual(['herald-cluster', 'herald-delivery', 'herald-overview']);
  for (const { file, dashboard } of dashboards) {
    const vars = dashboard.templating.list.map((v) => v.name);
    expect(vars, file).toEqual(expect.arrayContaining(['datasource', 'node', 'topic', 'subscription']));
    const ids = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).map((p) => p.id);
    expect(new Set(ids).size, `${file}: panel ids are unique`).toBe(ids.length);
    for (const p of panelsOf(dashboard)) {
      expect(p.targets?.length, `${file}: ${p.title} has a query`).toBeGreaterThan(0);
      expect(p.gridPos, `${file}: ${p.title} has a place`).toBeDefined();
      for (const t of p.targets!) expect(t.datasource?.uid, `${file}: ${p.title}`).toBe('${datasource}');
    }
  }
});

test('every metric is exported, and a scraped /metrics passes promtool check metrics on every node', async () => {
  await eventually(async () => {
    const text = await (await fetch(`${cluster!.url(leader)}/metrics`)).text();
    return heraldMetrics.every((m) => new RegExp(`^# TYPE ${m} `, 'm').test(text));
  }, 30_000, 200);
  for (const id of [1, 2, 3]) {
    const text = await (await fetch(`${cluster!.url(id)}/metrics`)).text();
    const check = promtool(['check', 'metrics'], { input: text });
    expect(check.status, `node ${id}: ${check.output}`).toBe(0);
    expect(check.output.trim(), `node ${id}`).toBe('');
    // Labels carry route patterns and names, never raw URLs.
    expect(text).not.toMatch(/route="\/v1\/topics\/orders/);
  }
});

test('every dashboard query, variable and alert expression returns data from the real Prometheus', async () => {
  const p = prom!;
  const queries = dashboards.flatMap(({ file, dashboard }) =>
    panelsOf(dashboard).flatMap((panel) =>
      (panel.targets ?? []).map((t) => ({ where: `${file} / ${panel.title} / ${t.refId}`, expr: substitute(t.expr), needsData: true })),
    ),
  );
  // The rules as Prometheus loaded them: each parses as it is, and in bool form returns its series.
  const rules = (await eventually(async () => {
    const data = await p.get<{ groups: { rules: { name: string; query: string; health: string; lastError?: string }[] }[] }>('/api/v1/rules');
    const all = data.groups.flatMap((g) => g.rules);
    return all.length === alertNames.length && all.every((r) => r.health === 'ok') ? all : undefined;
  }, 20_000, 200))!;
  expect(rules.map((r) => r.name).sort()).toEqual([...alertNames].sort());
  for (const r of rules) {
    queries.push({ where: `alert ${r.name}`, expr: r.query, needsData: false });
    queries.push({ where: `alert ${r.name} (bool)`, expr: withBool(r.query), needsData: true });
  }
  expect(queries.length).toBeGreaterThan(60);

  // Variables: label_values(selector, label) has values.
  const variables = dashboards.flatMap(({ file, dashboard }) =>
    dashboard.templating.list
      .filter((v) => v.type === 'query')
      .map((v) => ({ where: `${file} / $${v.name}`, query: substitute(typeof v.query === 'string' ? v.query : v.query.query) })),
  );

  let failures: string[] = [];
  await eventually(async () => {
    failures = [];
    for (const q of queries) {
      const r = await p.query(q.expr);
      if (r.status !== 'success') failures.push(`${q.where}: ${r.error} in ${q.expr}`);
      else if (q.needsData && r.data!.result.length === 0) failures.push(`${q.where}: no data for ${q.expr}`);
    }
    for (const v of variables) {
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(v.query);
      if (!m) {
        failures.push(`${v.where}: not a label_values query: ${v.query}`);
        continue;
      }
      const series = await p.get<Record<string, string>[]>(`/api/v1/series?match[]=${encodeURIComponent(m[1]!)}`);
      if (!series.some((s) => s[m[2]!] !== undefined)) failures.push(`${v.where}: no values for ${v.query}`);
    }
    // A query that does not parse will not start to: stop polling at once.
    return failures.length === 0 || failures.some((f) => f.includes('parse error'));
  }, 60_000, 1000).catch(() => undefined);
  expect(failures, `Prometheus log:\n${p.log}`).toEqual([]);

  // What the test relies on happened: all three nodes scraped, failures and nacks among the deliveries.
  const up = await p.query('sum(up{job="herald"})');
  expect(Number(up.data!.result[0]!.value[1])).toBe(3);
  const outcomes = await p.query('sum by (mode, outcome) (herald_deliveries_total)');
  const seen = outcomes.data!.result.map((s) => `${s.metric.mode}/${s.metric.outcome}`);
  expect(seen).toEqual(expect.arrayContaining(['pull/sent', 'pull/acked', 'pull/nacked', 'push/sent', 'push/acked', 'push/failed', 'websocket/sent', 'websocket/acked']));
}, 90_000);
