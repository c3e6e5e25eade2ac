/**
 * Herald's Prometheus metrics: every definition, the one-line hooks the rest of the code calls, and
 * the scrape-time readers. `/metrics` (routes/operations.ts) serves prom-client's default registry,
 * where these sit beside Node's process metrics (prefixed `herald_` too).
 *
 * Cost rules. State that the broker or the Raft driver already holds (backlogs, ages, indexes, sizes)
 * is read when Prometheus scrapes, never tracked on the way. Counters on the hot paths (publish, pull,
 * ack) move once per request or batch, by the batch's size; histograms observe once per request or
 * step. The core stays pure: nothing here is imported by src/core, and core state is read through
 * the node's queries.
 *
 * Counts of what a node does (published, deliveries, webhooks, HTTP) are counted where it is done:
 * on the leader for writes, so summing over instances gives the cluster's total. Replicated state
 * (backlogs, topics, Raft indexes) is exported by every node, so dashboards take `max` over instances
 * for it. One node per process: a process that runs several (some tests) reports on the last bound.
 */
import { readFileSync, statSync } from 'node:fs';
import { filesystemSpace, segmentUsage } from '../storage/usage.js';
import type { StorageFullReason } from '../storage/lmdb-storage.js';
import { join } from 'node:path';
import { collectDefaultMetrics, register } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import type { PublishItem, StampedCommand } from '../core/broker/commands.js';
import type { PublishResult, Reply } from '../core/broker/machine.js';
import type { HeraldNode } from '../runtime/herald-node.js';
import type { PushDispatcher, PushState } from '../delivery/push-dispatcher.js';
import { CollectedMetric, Counter, Histogram, UpDownGauge, type Exportable } from './metric-types.js';
import { LabelCap, otherLabelValue } from './label-cap.js';
import { PublishTimes } from './publish-times.js';

// ---- buckets (seconds) ----

/** Requests and commits: sub-millisecond to a long poll's 30 s. */
const requestBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Disk steps: an fsync is 0.1–20 ms on most disks. */
const diskBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** End to end, publish to ack: from milliseconds to a backlog of hours. */
const endToEndBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400];

export type DeliveryMode = 'pull' | 'push' | 'websocket';
/** `sent`: handed to a consumer (in a pull answer, a socket frame, a webhook request); then how it ended. */
export type DeliveryOutcome = 'sent' | 'acked' | 'nacked' | 'failed';
export type WebSocketKind = 'consumer' | 'tail' | 'publisher' | 'proxy';

const topics = new LabelCap();
const subscriptions = new LabelCap();
const publishTimes = new PublishTimes();

// ---- counted where it happens ----

const publishedMessages = new Counter('herald_published_messages_total', 'Messages published (duplicates by dedupId not counted), on the leader.', ['topic']);
const publishedBytes = new Counter('herald_published_bytes_total', 'Decoded data bytes of the messages published, on the leader.', ['topic']);
const publishDuration = new Histogram('herald_publish_duration_seconds', 'Publish requests, from the route to the commit of their batch (on the leader).', [], requestBuckets);
const deliveries = new Counter(
  'herald_deliveries_total',
  'Messages handed to consumers (outcome="sent") and how deliveries ended (acked, nacked, failed), by mode: pull (HTTP), push (webhooks), websocket.',
  ['subscription', 'mode', 'outcome'],
);
const publishToAck = new Histogram(
  'herald_publish_to_ack_seconds',
  'Time from publish to ack of acked messages, every mode (on the leader). Each ack command is sampled at one message in 8, each sample weighted by the messages it stands for.',
  [],
  endToEndBuckets,
);
const webhookRequests = new Counter(
  'herald_webhook_requests_total',
  'Webhook attempts by result: success (2xx), http_<status> otherwise, or the error (timeout, connection_refused, ...).',
  ['subscription', 'endpoint', 'result'],
);
const webhookDuration = new Histogram('herald_webhook_request_duration_seconds', 'Webhook attempts, from the request to its answer or error.', [], requestBuckets);
const websocketConnections = new UpDownGauge('herald_websocket_connections', 'Open WebSocket connections: consumer (a subscription), tail (a topic), publisher (a publish stream), proxy (a consumer or publisher passed on to the leader).', ['kind']);
const pullsWaiting = new UpDownGauge('herald_pull_waiting_requests', 'Long polls waiting for messages here (on the leader: a follower passes its long polls on).', []);
const websocketOpened = new Counter('herald_websocket_connections_opened_total', 'WebSocket connections accepted.', ['kind']);
const httpDuration = new Histogram(
  'herald_http_request_duration_seconds',
  'HTTP requests by route pattern (as registered, e.g. /v1/topics/:name/messages; unmatched for 404s), method and status.',
  ['route', 'method', 'status'],
  requestBuckets,
);
const leaderChanges = new Counter('herald_raft_leader_changes_total', 'Times this node saw the leader change (to another node, or to none).');
const snapshots = new Counter('herald_raft_snapshots_total', 'Snapshots: taken here, sent to a follower (streamed in full), installed from the leader.', ['kind']);
const appendDuration = new Histogram('herald_raft_append_duration_seconds', 'Durable storage steps: new log entries, message index and hard state written and fsynced (one per driver step; group commit). A follower\'s step that only appends ends once its entries are synced into the segment files; its LMDB transaction lands after it (herald_storage_fsync_duration_seconds).', [], diskBuckets);
const appendedEntries = new Counter('herald_raft_appended_entries_total', 'Raft log entries written to this node’s log.');
const appendedBytes = new Counter('herald_raft_appended_bytes_total', 'Bytes of the Raft log entries written to this node’s log.');
const fsyncDuration = new Histogram(
  'herald_storage_fsync_duration_seconds',
  'LMDB write transactions to disk: commit with its fsync (under --durability relaxed, no fsync).',
  [],
  diskBuckets,
);
const storageWriteFailures = new Counter(
  'herald_storage_write_failures_total',
  'Storage steps that failed, by reason: no_space, quota, map_full (undone and tried again; publishes are refused meanwhile), other (the node stops).',
  ['reason'],
);

for (const kind of ['consumer', 'tail', 'publisher', 'proxy'] as const) {
  websocketConnections.add(0, kind);
  websocketOpened.child(kind);
}
for (const kind of ['taken', 'sent', 'installed']) snapshots.child(kind);
for (const reason of ['no_space', 'quota', 'map_full', 'other'] satisfies (StorageFullReason | 'other')[]) storageWriteFailures.child(reason);
pullsWaiting.add(0);
leaderChanges.child();
appendedEntries.child();
appendedBytes.child();
publishDuration.child();
publishToAck.child();
webhookDuration.child();
appendDuration.child();
fsyncDuration.child();

// ---- hooks (one call from where things happen) ----

/** Route: a publish request was answered. */
export function notePublished(topic: string, messages: readonly PublishItem[], results: readonly PublishResult[], startedMs: number): void {
  let count = 0;
  let bytes = 0;
  for (let i = 0; i < results.length; i++) {
    if (results[i]!.duplicate) continue;
    count++;
    bytes += messages[i]!.data.length;
  }
  const label = topics.label(topic);
  publishedMessages.child(label).inc(count);
  publishedBytes.child(label).inc(bytes);
  publishDuration.child().observe((performance.now() - startedMs) / 1000);
}

/** A consumer got `n` messages, or `n` of its deliveries ended with `outcome`. */
export function noteDeliveries(mode: DeliveryMode, subscription: string, outcome: DeliveryOutcome, n: number): void {
  if (n > 0) deliveries.child(subscriptions.label(subscription), mode, outcome).inc(n);
}

/** Resolves as `proposal` does; counts the ackIds the log accepted (for ack and nack commands). */
export function countSettled(mode: DeliveryMode, subscription: string, outcome: DeliveryOutcome, proposal: Promise<Reply>): Promise<Reply> {
  return proposal.then((reply) => {
    if (reply.ok && 'count' in reply) noteDeliveries(mode, subscription, outcome, reply.count);
    return reply;
  });
}

/** One webhook attempt ended: `outcome` is the HTTP status or an error name; `origin` the endpoint's. */
export function noteWebhookAttempt(subscription: string, origin: string, outcome: number | string, latencyMs: number): void {
  const sub = subscriptions.label(subscription);
  const ok = typeof outcome === 'number' && outcome >= 200 && outcome < 300;
  const result = ok ? 'success' : typeof outcome === 'number' ? `http_${outcome}` : outcome.replace(/-/g, '_');
  webhookRequests.child(sub, sub === otherLabelValue ? otherLabelValue : origin, result).inc();
  webhookDuration.child().observe(latencyMs / 1000);
  noteDeliveries('push', subscription, 'sent', 1);
  noteDeliveries('push', subscription, ok ? 'acked' : 'failed', 1);
}

/** A long poll started (+1) or ended (-1) waiting. */
export function notePullWaiting(delta: 1 | -1): void {
  pullsWaiting.add(delta);
}

/** A WebSocket was accepted; the gauge goes down again when it closes. */
export function noteWebSocket(kind: WebSocketKind, socket: { once(event: 'close', listener: () => void): unknown }): void {
  websocketConnections.add(1, kind);
  websocketOpened.child(kind).inc();
  socket.once('close', () => websocketConnections.add(-1, kind));
}

let knownLeader = 0;

/** The driver's view of the leader changed (or its role did): counts changes of the leader. */
export function noteLeader(leader: number): void {
  if (leader === knownLeader) return;
  knownLeader = leader;
  leaderChanges.child().inc();
}

export function noteSnapshot(kind: 'taken' | 'sent' | 'installed'): void {
  snapshots.child(kind).inc();
}

/** The driver's durable step is done (`startedMs` from performance.now()). */
export function noteAppend(startedMs: number, entries: readonly { data: Uint8Array }[]): void {
  appendDuration.child().observe((performance.now() - startedMs) / 1000);
  if (entries.length === 0) return;
  let bytes = 0;
  for (const e of entries) bytes += e.data.length;
  appendedEntries.child().inc(entries.length);
  appendedBytes.child().inc(bytes);
}

export function noteFsync(startedMs: number): void {
  fsyncDuration.child().observe((performance.now() - startedMs) / 1000);
}

/** A storage step failed (each attempt counts). */
export function noteStorageWriteFailure(reason: StorageFullReason | 'other'): void {
  storageWriteFailures.child(reason).inc();
}

/** One in this many acked messages is timed (the first of each ack command always is). */
const ackSampleStride = 8;

/**
 * The driver applied a command. Every node notes publish times (so a new leader can time acks of
 * messages published before it led); the leader times acks.
 */
export function noteApplied(stamped: StampedCommand, reply: Reply | undefined, node: HeraldNode): void {
  const c = stamped.command;
  if (c.type === 'publish') {
    if (!reply?.ok || !('results' in reply)) return;
    let first = Infinity;
    let last = 0;
    for (const r of reply.results) {
      if (r.duplicate) continue;
      if (r.seq < first) first = r.seq;
      if (r.seq > last) last = r.seq;
    }
    if (last > 0) publishTimes.note(c.topic, first, last, stamped.nowMs);
  } else if (c.type === 'ack' && node.isLeader) {
    if (!reply?.ok || !('count' in reply) || reply.count === 0) return;
    const topic = node.machine.subscriptionConfig(c.subscription)?.topic;
    if (topic === undefined) return;
    const invalid = reply.invalid.length > 0 ? new Set(reply.invalid) : undefined;
    const ids = c.ackIds;
    for (let i = 0; i < ids.length; i += ackSampleStride) {
      const id = ids[i]!;
      if (invalid?.has(id)) continue;
      const dot = id.indexOf('.');
      const publishedMs = publishTimes.timeOf(topic, parseInt(id.slice(0, dot), 36));
      if (publishedMs === undefined) continue;
      publishToAck.child().observe(Math.max(0, stamped.nowMs - publishedMs) / 1000, Math.min(ackSampleStride, ids.length - i));
    }
  }
}

/** Times every HTTP request by its route pattern (never the raw URL: names would explode the labels). */
export function instrumentHttp(app: FastifyInstance): void {
  app.addHook('onResponse', (request, reply, done) => {
    httpDuration.child(request.routeOptions.url ?? 'unmatched', request.method, String(reply.statusCode)).observe(reply.elapsedTime / 1000);
    done();
  });
}

// ---- read when scraped ----

let bound: { node: HeraldNode; push: PushDispatcher | undefined } | undefined;

let defaultMetricsStarted = false;

/**
 * The node (and its push dispatcher) the scrape-time metrics describe. The first call also starts
 * prom-client's process metrics, less the three gauges it names `_total` (which Prometheus keeps for
 * counters, and `promtool check metrics` refuses); their per-type gauges stay.
 */
export function bindMetrics(node: HeraldNode, push?: PushDispatcher): void {
  bound = { node, push };
  if (defaultMetricsStarted) return;
  defaultMetricsStarted = true;
  collectDefaultMetrics({ prefix: 'herald_' });
  for (const name of ['herald_nodejs_active_handles_total', 'herald_nodejs_active_requests_total', 'herald_nodejs_active_resources_total']) {
    register.removeSingleMetric(name);
  }
}

interface SubscriptionRow {
  topic: string;
  subscription: string;
  backlog: number;
  inFlight: number;
  oldestAge: number;
  deadLettered: number;
}
interface TopicRow {
  topic: string;
  messages: number;
  bytes: number;
}
interface ScrapeState {
  topicRows: Map<string, TopicRow>;
  subscriptionRows: Map<string, SubscriptionRow>;
  /** (subscription, endpoint) → how many of its subscriptions are in each push state. */
  pushStates: Map<string, { subscription: string; endpoint: string; states: Record<PushState, number> }>;
  topicCount: number;
  subscriptionCount: number;
}

/**
 * The gauges of one scrape share one pass over the broker state: prom-client's Registry asks every
 * metric for its values in the same tick, and the pass is dropped at the next one.
 */
let lastScrape: ScrapeState | undefined;
const origins = new Map<string, string>();

function originOf(url: string): string {
  let o = origins.get(url);
  if (o === undefined) {
    if (origins.size > 10_000) origins.clear();
    try {
      o = new URL(url).origin;
    } catch {
      o = 'invalid';
    }
    origins.set(url, o);
  }
  return o;
}

function scrape(): ScrapeState | undefined {
  if (!bound) return undefined;
  if (lastScrape) return lastScrape;
  const { node, push } = bound;
  const machine = node.machine;
  // Names deleted since the last scrape give their label value back, and their series go.
  for (const name of subscriptions.retain((n) => machine.subscriptionConfig(n) !== undefined)) {
    deliveries.removeWhere('subscription', name);
    webhookRequests.removeWhere('subscription', name);
  }
  for (const name of topics.retain((n) => machine.topicConfig(n) !== undefined)) {
    publishedMessages.removeWhere('topic', name);
    publishedBytes.removeWhere('topic', name);
  }
  publishTimes.retain((n) => machine.topicConfig(n) !== undefined);

  const topicRows = new Map<string, TopicRow>();
  const topicNames = machine.topicNames();
  for (const name of topicNames) {
    const info = machine.topicInfo(name)!;
    const topic = topics.label(name);
    const row = topicRows.get(topic) ?? { topic, messages: 0, bytes: 0 };
    row.messages += info.messages;
    row.bytes += info.bytes;
    topicRows.set(topic, row);
  }
  const subscriptionRows = new Map<string, SubscriptionRow>();
  const pushStates: ScrapeState['pushStates'] = new Map();
  const nodeNow = node.now();
  const subscriptionNames = machine.subscriptionNames();
  for (const name of subscriptionNames) {
    const info = machine.subscriptionInfo(name, nodeNow)!;
    const subscription = subscriptions.label(name);
    const topic = topics.label(info.config.topic);
    const key = `${topic}\u0000${subscription}`;
    let row = subscriptionRows.get(key);
    if (!row) subscriptionRows.set(key, (row = { topic, subscription, backlog: 0, inFlight: 0, oldestAge: 0, deadLettered: 0 }));
    row.backlog += info.backlog;
    row.inFlight += info.inFlight;
    row.oldestAge = Math.max(row.oldestAge, info.oldestUnackedAgeSeconds);
    row.deadLettered += info.deadLettered;
    // Pushers run on the leader only: a follower has no circuit to report.
    if (info.config.push && push && node.isLeader) {
      const endpoint = subscription === otherLabelValue ? otherLabelValue : originOf(info.config.push.url);
      const pkey = `${subscription}\u0000${endpoint}`;
      let p = pushStates.get(pkey);
      if (!p) pushStates.set(pkey, (p = { subscription, endpoint, states: { active: 0, 'backing-off': 0, paused: 0 } }));
      p.states[push.pushState(name)]++;
    }
  }
  lastScrape = { topicRows, subscriptionRows, pushStates, topicCount: topicNames.length, subscriptionCount: subscriptionNames.length };
  setImmediate(() => (lastScrape = undefined));
  return lastScrape;
}

function* subscriptionGauge(pick: (r: SubscriptionRow) => number): Iterable<[string[], number]> {
  for (const r of scrape()?.subscriptionRows.values() ?? []) yield [[r.topic, r.subscription], pick(r)];
}

function* topicGauge(pick: (r: TopicRow) => number): Iterable<[string[], number]> {
  for (const r of scrape()?.topicRows.values() ?? []) yield [[r.topic], pick(r)];
}

function* one(value: () => number | undefined): Iterable<[string[], number]> {
  if (!bound) return;
  const v = value();
  if (v !== undefined) yield [[], v];
}

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function packageVersion(): string {
  // dist/main.js and src/metrics/registry.ts both find the package one or two levels up.
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'herald' && pkg.version) return pkg.version;
    } catch {
      /* try the next */
    }
  }
  return 'unknown';
}
const version = packageVersion();

const sub = ['topic', 'subscription'];
const collected: Exportable[] = [
  new CollectedMetric('herald_build_info', 'Always 1; the labels say which Herald and which Node.js.', ['version', 'nodejs_version'], () => [[[version, process.version], 1]]),
  new CollectedMetric('herald_topics', 'Topics (all of them, whatever the label cap).', [], () => one(() => scrape()?.topicCount)),
  new CollectedMetric('herald_subscriptions', 'Subscriptions (all of them, whatever the label cap).', [], () => one(() => scrape()?.subscriptionCount)),
  new CollectedMetric('herald_topic_retained_messages', 'Messages a topic retains (summed under topic="_other" past the label cap).', ['topic'], () => topicGauge((r) => r.messages)),
  new CollectedMetric('herald_topic_retained_bytes', 'Data bytes of the messages a topic retains.', ['topic'], () => topicGauge((r) => r.bytes)),
  new CollectedMetric('herald_subscription_backlog_messages', 'Messages a subscription has not had acked yet: ahead of its cursor and pending (in flight, delayed, nacked).', sub, () =>
    subscriptionGauge((r) => r.backlog),
  ),
  new CollectedMetric('herald_subscription_in_flight_messages', 'Messages leased to consumers and not yet acked or expired.', sub, () => subscriptionGauge((r) => r.inFlight)),
  new CollectedMetric('herald_subscription_oldest_unacked_age_seconds', 'Age of the oldest message not yet acked (the largest, under subscription="_other").', sub, () =>
    subscriptionGauge((r) => r.oldestAge),
  ),
  new CollectedMetric('herald_subscription_dead_lettered_messages', 'Messages dead-lettered and not redriven since.', sub, () => subscriptionGauge((r) => r.deadLettered)),
  new CollectedMetric(
    'herald_webhook_circuit_state',
    'Push state per endpoint, on the leader: 1 for the state it is in (active, backing-off: circuit open or probing, paused: 410), else 0; under "_other", how many are in each.',
    ['subscription', 'endpoint', 'state'],
    function* () {
      for (const p of scrape()?.pushStates.values() ?? []) {
        for (const [state, n] of Object.entries(p.states)) yield [[p.subscription, p.endpoint, state], n];
      }
    },
  ),
  new CollectedMetric('herald_raft_node_id', 'This node’s id.', [], () => one(() => bound!.node.id)),
  new CollectedMetric('herald_raft_term', 'The current Raft term.', [], () => one(() => bound!.node.term)),
  new CollectedMetric('herald_raft_is_leader', '1 on the leader, 0 elsewhere.', [], () => one(() => (bound!.node.isLeader ? 1 : 0))),
  new CollectedMetric('herald_raft_leader_id', 'The leader this node knows of (0: none).', [], () => one(() => bound!.node.leaderId)),
  new CollectedMetric('herald_raft_commit_index', 'The highest log index known to be committed.', [], () => one(() => bound!.node.commitIndex)),
  new CollectedMetric('herald_raft_applied_index', 'The highest log index applied to the broker state.', [], () => one(() => bound!.node.applied)),
  new CollectedMetric('herald_raft_snapshot_index', 'The log index of this node’s latest snapshot.', [], () => one(() => bound!.node.clusterStatus().snapshotIndex)),
  new CollectedMetric('herald_raft_log_entries', 'Entries in this node’s stored log (after its snapshot).', [], () =>
    one(() => {
      const s = bound!.node.storageStatus();
      return Math.max(0, s.logLastIndex - s.logFirstIndex + 1);
    }),
  ),
  new CollectedMetric('herald_raft_last_log_index', 'The last index in this node’s stored log.', [], () => one(() => bound!.node.storageStatus().logLastIndex)),
  new CollectedMetric('herald_raft_proposals_waiting', 'Writes proposed here and waiting to be applied (limit 50,000).', [], () => one(() => bound!.node.storageStatus().proposalsWaiting)),
  new CollectedMetric('herald_raft_members', 'Members of the group as this node sees it, by role (voter, learner).', ['role'], function* () {
    if (!bound) return;
    const members = bound.node.clusterStatus().members;
    yield [['voter'], members.filter((m) => m.role !== 'learner').length];
    yield [['learner'], members.filter((m) => m.role === 'learner').length];
  }),
  new CollectedMetric('herald_raft_follower_lag_entries', 'On the leader: log entries each other member is behind its last index.', ['peer'], function* () {
    if (!bound?.node.isLeader) return;
    const status = bound.node.clusterStatus();
    const last = bound.node.storageStatus().logLastIndex;
    for (const m of status.members) if (m.id !== status.nodeId) yield [[m.id], Math.max(0, last - m.matchIndex)];
  }),
  new CollectedMetric('herald_lmdb_size_bytes', 'Size of the LMDB file (<data>/herald.mdb): Raft log, snapshots, message index.', [], () =>
    one(() => fileBytes(join(bound!.node.storageStatus().dataDir, 'herald.mdb'))),
  ),
  new CollectedMetric('herald_segment_files', 'Segment files holding message bodies (<data>/segments).', [], () => one(() => segmentUsage(bound!.node.storageStatus().dataDir).files)),
  new CollectedMetric('herald_segment_size_bytes', 'Bytes in the segment files.', [], () => one(() => segmentUsage(bound!.node.storageStatus().dataDir).bytes)),
  new CollectedMetric('herald_data_filesystem_avail_bytes', 'Bytes free to Herald on the filesystem of its data directory.', [], () =>
    one(() => filesystemSpace(bound!.node.storageStatus().dataDir)?.availBytes),
  ),
  new CollectedMetric('herald_data_filesystem_size_bytes', 'Size of the filesystem of the data directory.', [], () => one(() => filesystemSpace(bound!.node.storageStatus().dataDir)?.sizeBytes)),
];

const all: Exportable[] = [
  publishedMessages,
  publishedBytes,
  publishDuration,
  deliveries,
  publishToAck,
  webhookRequests,
  webhookDuration,
  pullsWaiting,
  websocketConnections,
  websocketOpened,
  httpDuration,
  leaderChanges,
  snapshots,
  appendDuration,
  appendedEntries,
  appendedBytes,
  fsyncDuration,
  storageWriteFailures,
  ...collected,
];
// prom-client's Registry takes any object with a name and get() (it is duck-typed).
for (const m of all) register.registerMetric(m as unknown as Parameters<typeof register.registerMetric>[0]);
