// Goal: no request, however malformed, makes a real Herald node answer 5xx, hang, crash, answer an
// error outside the contract's shape, or lose what it stored. Method: fast-check throws random
// methods × paths (real routes with random names, garbage paths) × bodies (random JSON, random
// values, strings, big strings, nested, near-valid bodies per route) × content-types at one node
// process. Before the run a protected topic gets messages and its subscription acks some of them;
// after it, every stored message is still there, the acked ones stay acked and the rest still pull.
// A 5xx, a hang or a dead process fails the property at once (fast-check shrinks it); a 4xx outside
// the contract is collected, and all of them are listed at the end.
import http from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, apiOk, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';
import { sendOverSocket } from '../helpers/raw-http.js';

let h: HeraldProcess;

/** API.md's error table. */
const errorStatus: Record<string, number> = {
  InvalidRequest: 400,
  Unauthenticated: 401,
  Forbidden: 403,
  TopicNotFound: 404,
  SubscriptionNotFound: 404,
  NotFound: 404,
  AlreadyExists: 409,
  PayloadTooLarge: 413,
  RateLimited: 429,
  NoLeader: 503,
  Unavailable: 503,
};

const KEEP_TOPIC = 'keep';
const KEEP_SUB = 'keep-sub';
const PROTECTED = new Set([KEEP_TOPIC, KEEP_SUB]);
const KEEP_COUNT = 10;
const KEEP_ACKED = 4;
const keepData = (i: number) => `keep message ${i} ✓`;

interface Req {
  method: string;
  path: string;
  body?: string;
  contentType?: string;
}
interface Res {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

function send(req: Req, timeoutMs = 15_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {};
    if (req.contentType !== undefined) headers['content-type'] = req.contentType;
    if (req.body !== undefined) headers['content-length'] = Buffer.byteLength(req.body);
    const r = http.request(h.url + req.path, { method: req.method, headers, agent: false });
    let answered = false;
    const timer = setTimeout(() => {
      r.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms (hang)`));
    }, timeoutMs);
    r.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString(), headers: res.headers });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    r.on('error', (e) => {
      if (answered) return; // a reset after the answer is fine
      clearTimeout(timer);
      reject(e);
    });
    r.end(req.body);
  });
}


/** Big bodies go over a plain socket (see sendOverSocket); the rest through node:http. */
async function sendAny(req: Req): Promise<Res> {
  if (req.body === undefined || req.body.length < 1024 * 1024) return send(req);
  const headers: Record<string, string> = req.contentType !== undefined ? { 'content-type': req.contentType } : {};
  return sendOverSocket(h.url, req.method, req.path, Buffer.from(req.body), headers);
}

// ---- generators ----

const FUZZ_NAMES = ['fza', 'fzb', 'fzc', 'fzq', 'fzs', 'fzt'];

function encodeSegment(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return 'x';
  }
}

const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...FUZZ_NAMES) },
  { weight: 3, arbitrary: fc.stringMatching(/^fz[a-z0-9._-]{0,8}$/) },
  { weight: 3, arbitrary: fc.constantFrom(KEEP_TOPIC, KEEP_SUB) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }).map(encodeSegment) },
  { weight: 1, arbitrary: fc.stringMatching(/^[-._~][a-z0-9]{0,5}$/) },
  { weight: 1, arbitrary: fc.integer({ min: 95, max: 140 }).map((n) => 'fz'.padEnd(n, 'x')) },
  { weight: 1, arbitrary: fc.constantFrom('%ZZ', '%', 'a%C3', '%00', '..', '.', '%2e%2e', 'a%2Fb', '') },
);

/** A value of the wrong type, out of range, or right. */
const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: -5, max: 2000 }),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 6 }),
  fc.constant(null),
  fc.boolean(),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }),
);
const intOr = (min: number, max: number) => fc.oneof({ weight: 3, arbitrary: fc.integer({ min, max }) }, { weight: 1, arbitrary: weird });
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const shortString = fc.string({ unit: 'binary', maxLength: 40 });
const isoTime = fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString());
const routingKeyArb = fc.oneof(
  fc.array(fc.stringMatching(/^[a-z*#]{1,4}$/), { minLength: 1, maxLength: 18 }).map((w) => w.join('.')),
  shortString,
);

const topicConfigBody = fc.record(
  { retentionSeconds: intOr(50, 1_300_000), maxMessageBytes: intOr(1, 2_000_000), dedupWindowSeconds: intOr(0, 100_000) },
  { requiredKeys: [] },
);

const subscriptionFieldsArb = {
  ackDeadlineSeconds: intOr(0, 43_300),
  filter: fc.oneof(
    fc.constant(null),
    fc.record({ tags: opt(fc.array(shortString, { maxLength: 18 })), bindingKeys: opt(fc.array(routingKeyArb, { maxLength: 18 })) }, { requiredKeys: [] }),
    weird,
  ),
  // Never the protected topic: dead-lettered copies would add messages to it that nobody counts.
  deadLetter: fc.oneof(fc.constant(null), fc.record({ topic: nameArb.filter((n) => !PROTECTED.has(n)), maxDeliveries: opt(intOr(0, 2000)) }, { requiredKeys: ['topic'] }), weird),
  ordered: fc.oneof(fc.boolean(), weird),
  startAt: fc.oneof(
    fc.constantFrom('latest', 'earliest', 'middle'),
    fc.record({ seq: intOr(-2, 100) }),
    fc.record({ time: fc.oneof(isoTime, shortString) }),
    weird,
  ),
  retry: fc.oneof(
    fc.record({ policy: fc.constant('fixed'), intervalMs: opt(intOr(0, 100_000)), maxAttempts: opt(fc.oneof(intOr(0, 10), fc.constant(null))) }, { requiredKeys: ['policy'] }),
    fc.record(
      { policy: fc.constant('exponential'), minBackoffMs: opt(intOr(0, 100_000)), maxBackoffMs: opt(intOr(0, 100_000)), multiplier: opt(weird), jitter: opt(weird) },
      { requiredKeys: ['policy'] },
    ),
    fc.record({ policy: fc.constantFrom('EXPONENTIAL_DECAY_RETRY', 'BACKOFF_RETRY', 'bogus') }),
    weird,
  ),
  // .invalid never resolves: nothing is ever posted anywhere.
  push: fc.oneof(
    fc.constant(null),
    fc.record(
      {
        url: fc.oneof(fc.constantFrom('https://hook.example.invalid/h', 'http://127.0.0.1:1/h', 'ftp://x.invalid/'), shortString),
        format: opt(fc.oneof(fc.constantFrom('json', 'raw', 'cloudevents', 'xml'), weird)),
        timeoutMs: opt(intOr(0, 200_000)),
        headers: opt(fc.dictionary(shortString, shortString, { maxKeys: 3 })),
      },
      { requiredKeys: ['url'] },
    ),
    weird,
  ),
};

const subscriptionBody = fc.record({ topic: nameArb, ...subscriptionFieldsArb }, { requiredKeys: [] });
const subscriptionPatch = fc.record(
  {
    ackDeadlineSeconds: subscriptionFieldsArb.ackDeadlineSeconds,
    filter: subscriptionFieldsArb.filter,
    deadLetter: subscriptionFieldsArb.deadLetter,
    retry: subscriptionFieldsArb.retry,
    push: subscriptionFieldsArb.push,
  },
  { requiredKeys: [] },
);
const queueBody = fc.record(
  {
    retentionSeconds: intOr(50, 1_300_000),
    maxMessageBytes: intOr(1, 2_000_000),
    ackDeadlineSeconds: subscriptionFieldsArb.ackDeadlineSeconds,
    deadLetter: subscriptionFieldsArb.deadLetter,
    startAt: subscriptionFieldsArb.startAt,
  },
  { requiredKeys: [] },
);

/** Mostly valid, sometimes the wrong type or out of range. */
const mostly = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: weird });
const half = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 2 });
const payloadArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ data: fc.string({ unit: 'binary', maxLength: 64 }), encoding: half(fc.constant('utf8')) }, { requiredKeys: ['data'] }) },
  { weight: 2, arbitrary: fc.record({ data: fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString('base64')), encoding: fc.constant('base64') }) },
  { weight: 1, arbitrary: fc.record({ data: weird, encoding: opt(fc.oneof(fc.constantFrom('utf8', 'base64', 'hex'), weird)) }, { requiredKeys: [] }) },
);
const messageArb = fc
  .tuple(
    payloadArb,
    fc.record(
      {
        attributes: half(mostly(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 4 }))),
        tags: half(mostly(fc.array(fc.string({ minLength: 1, maxLength: 10 }), { maxLength: 4 }))),
        routingKey: half(mostly(routingKeyArb)),
        orderingKey: half(mostly(fc.constantFrom('k1', 'k2', 'k3'))),
        dedupId: half(mostly(fc.oneof(fc.constantFrom('d1', 'd2', 'd3'), fc.string({ minLength: 1, maxLength: 20 })))),
        delaySeconds: half(mostly(fc.constantFrom(0, 0, 0, 1, 900, 901, -1))),
      },
      { requiredKeys: [] },
    ),
  )
  .map(([payload, rest]) => ({ ...payload, ...rest }));
const publishBody = fc.oneof(
  { weight: 6, arbitrary: fc.record({ messages: fc.array(messageArb, { maxLength: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ messages: weird }) },
  { weight: 1, arbitrary: fc.constant({ messages: Array.from({ length: 1001 }, () => ({ data: 'x' })) }) },
);
// waitSeconds stays tiny or invalid: a valid long poll would only make the run slow.
const pullBody = fc.record(
  { max: intOr(0, 1002), waitSeconds: fc.constantFrom(0, 0.01, 0.05, 31, -1, 1e9, '1', null, true), ackDeadlineSeconds: intOr(0, 43_300) },
  { requiredKeys: [] },
);
const ackIdArb = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 5000 })).map(([s, t]) => `${s.toString(36)}.${t.toString(36)}`),
  fc.string({ unit: 'binary', minLength: 0, maxLength: 300 }),
  weird,
);
const ackIdsArb = fc.oneof(fc.array(ackIdArb, { maxLength: 6 }), weird, fc.constant(Array.from({ length: 1001 }, (_, i) => `x${i}`)));
const ackBody = fc.record({ ackIds: ackIdsArb, delaySeconds: opt(intOr(-1, 100)), seconds: opt(intOr(-1, 43_300)) }, { requiredKeys: [] });
const seekBody = fc.oneof(fc.record({ seq: intOr(-2, 100) }), fc.record({ time: fc.oneof(isoTime, shortString, weird) }), fc.record({ seq: weird, time: weird }));
const redriveBody = fc.record({ max: intOr(-1, 200_000) }, { requiredKeys: [] });

/** A body of any shape: random JSON, random values, strings, big strings, deep nesting. */
const anyBody: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 3, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 3, arbitrary: fc.anything({ maxDepth: 4 }).map((v) => JSON.stringify(v) as string | undefined) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  { weight: 1, arbitrary: fc.constantFrom('', '{', '[', 'null', 'true', '0', '"x"', '{"a":}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}') },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 40_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 5000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 2_000_000 }).map((n) => JSON.stringify({ messages: [{ data: 'b'.repeat(n) }] })) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 300_000 }).map((n) => JSON.stringify({ pad: 'p'.repeat(n) })) },
  { weight: 1, arbitrary: fc.constant(`{"messages":[{"data":"${'z'.repeat(10 * 1024 * 1024)}"}]}`) },
);

const contentTypeArb: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 12, arbitrary: fc.constant('application/json') },
  { weight: 1, arbitrary: fc.constant(undefined) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'text/plain',
      'application/octet-stream',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/json; charset=utf-16',
      'application/vnd.api+json',
    ),
  },
  { weight: 1, arbitrary: fc.stringMatching(/^[ -~]{0,40}$/) },
);

const otherMethods = ['GET', 'PUT', 'POST', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'PROPFIND', 'SEARCH'] as const;

type Route = { method: string; path: string; body: fc.Arbitrary<unknown> | null; name?: string; consumer?: boolean; template?: string };

/** Real routes with a random name and a near-valid body for them. */
const realRouteArb: fc.Arbitrary<Route> = fc.oneof(
  nameArb.chain((n) =>
    fc.constantFrom<Route>(
      { method: 'PUT', path: `/v1/topics/${n}`, body: topicConfigBody, name: n },
      { method: 'GET', path: `/v1/topics/${n}`, body: null, name: n },
      { method: 'PATCH', path: `/v1/topics/${n}`, body: topicConfigBody, name: n },
      { method: 'DELETE', path: `/v1/topics/${n}`, body: null, name: n },
      { method: 'POST', path: `/v1/topics/${n}/messages`, body: publishBody, name: n },
      { method: 'PUT', path: `/v1/queues/${n}`, body: queueBody, name: n },
      { method: 'GET', path: `/v1/queues/${n}`, body: null, name: n },
      { method: 'DELETE', path: `/v1/queues/${n}`, body: null, name: n },
      { method: 'POST', path: `/v1/queues/${n}/messages`, body: publishBody, name: n },
      { method: 'POST', path: `/v1/queues/${n}/pull`, body: pullBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/queues/${n}/ack`, body: ackBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/queues/${n}/nack`, body: ackBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/queues/${n}/modify-ack-deadline`, body: ackBody, name: n, consumer: true },
      { method: 'PUT', path: `/v1/subscriptions/${n}`, body: subscriptionBody, name: n },
      { method: 'GET', path: `/v1/subscriptions/${n}`, body: null, name: n },
      { method: 'PATCH', path: `/v1/subscriptions/${n}`, body: subscriptionPatch, name: n },
      { method: 'DELETE', path: `/v1/subscriptions/${n}`, body: null, name: n },
      { method: 'POST', path: `/v1/subscriptions/${n}/pull`, body: pullBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/subscriptions/${n}/ack`, body: ackBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/subscriptions/${n}/nack`, body: ackBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/subscriptions/${n}/modify-ack-deadline`, body: ackBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/subscriptions/${n}/seek`, body: seekBody, name: n, consumer: true },
      { method: 'POST', path: `/v1/subscriptions/${n}/redrive`, body: redriveBody, name: n, consumer: true },
      { method: 'GET', path: `/v1/subscriptions?topic=${n}`, body: null, name: n },
    ).map((r) => ({ ...r, template: n === '' ? r.path : r.path.replace(`/${n}`, '/{name}').replace(`=${n}`, '={name}') })),
  ),
  fc.constantFrom<Route>(
    { method: 'GET', path: '/v1/topics', body: null },
    { method: 'GET', path: '/v1/subscriptions', body: null },
    { method: 'GET', path: '/healthz', body: null },
    { method: 'GET', path: '/readyz', body: null },
    { method: 'GET', path: '/v1/cluster', body: null },
  ),
);

const garbagePathArb: fc.Arbitrary<string> = fc.oneof(
  fc.webPath(),
  fc
    .array(
      fc.constantFrom('v1', 'v2', 'topics', 'subscriptions', 'queues', 'messages', 'pull', 'ack', 'seek', 'ws', 'fza', 'fzq', '..', '.', '', '%ZZ', '%2F', '%00', 'x?y=1', '#'),
      { maxLength: 6 },
    )
    .map((a) => '/' + a.join('/')),
  fc.string({ unit: 'binary', maxLength: 60 }).map((s) => '/' + encodeSegment(s).replace(/%2F/g, '/')),
  fc.tuple(fc.constantFrom('/v1/subscriptions', '/v1/topics', '/healthz'), fc.string({ maxLength: 30 })).map(([p, q]) => `${p}?${encodeSegment(q).replace(/%3D/g, '=').replace(/%26/g, '&')}`),
);

const keepPublishRoute: Route = { method: 'POST', path: `/v1/topics/${KEEP_TOPIC}/messages`, body: publishBody, name: KEEP_TOPIC, template: '/v1/topics/{name}/messages' };

const requestArb: fc.Arbitrary<Req & { route?: Route }> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({
      method: fc.constant('POST'),
      path: fc.constant(keepPublishRoute.path),
      body: publishBody.map((b) => JSON.stringify(b) as string | undefined),
      contentType: contentTypeArb,
      route: fc.constant(keepPublishRoute),
    }),
  },
  {
    weight: 4,
    arbitrary: realRouteArb.chain((route) =>
      fc.record({
        method: fc.oneof({ weight: 5, arbitrary: fc.constant(route.method) }, { weight: 1, arbitrary: fc.constantFrom(...otherMethods) }),
        path: fc.constant(route.path),
        body: fc.oneof(
          { weight: route.body ? 5 : 0, arbitrary: (route.body ?? fc.constant(undefined)).map((b) => JSON.stringify(b) as string | undefined) },
          { weight: route.body ? 1 : 3, arbitrary: fc.constant(undefined) },
          { weight: 2, arbitrary: anyBody },
        ),
        contentType: contentTypeArb,
        route: fc.constant(route),
      }),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({ method: fc.constantFrom(...otherMethods), path: garbagePathArb, body: opt(anyBody), contentType: contentTypeArb }),
  },
);

/** Requests that would change the protected topic or subscription other than by publishing go elsewhere. */
function guard(req: Req & { route?: Route }): Req & { route?: Route } {
  const route = req.route;
  if (!route?.name || !PROTECTED.has(route.name)) return req;
  const destructive = req.method === 'DELETE' || req.method === 'PATCH' || (route.consumer === true && req.method !== 'GET');
  if (!destructive) return req;
  return { ...req, path: req.path.replace(`/${route.name}`, '/fzguarded') };
}

function isKeepPublish(req: Req): boolean {
  return req.method === 'POST' && (req.path === `/v1/topics/${KEEP_TOPIC}/messages` || req.path === `/v1/queues/${KEEP_TOPIC}/messages`);
}

function contractViolation(req: Req, res: Res): string | undefined {
  if (res.status >= 200 && res.status < 300) {
    if (req.method === 'HEAD' || req.path.startsWith('/metrics')) return undefined;
    try {
      JSON.parse(res.text);
      return undefined;
    } catch {
      return `${res.status} with a body that is not JSON`;
    }
  }
  if (res.status < 400 || res.status >= 500) return `status ${res.status}`;
  if (req.method === 'HEAD') return undefined; // no body to check
  let body: any;
  try {
    body = JSON.parse(res.text);
  } catch {
    return `${res.status} with a body that is not JSON`;
  }
  const ok =
    body !== null &&
    typeof body === 'object' &&
    Object.keys(body).length === 1 &&
    body.error !== null &&
    typeof body.error === 'object' &&
    Object.keys(body.error).sort().join() === 'code,message' &&
    typeof body.error.message === 'string' &&
    typeof body.error.code === 'string';
  if (!ok) return `${res.status} with a body not in the contract's shape: ${res.text.slice(0, 160)}`;
  if (errorStatus[body.error.code] !== res.status) return `${res.status} with code ${body.error.code}`;
  return undefined;
}

let published = 0;

beforeAll(async () => {
  h = await startHerald();
  const mk = (method: string, path: string, body?: unknown) => apiOk(h.url, method, path, body);
  await mk('PUT', `/v1/topics/${KEEP_TOPIC}`, {});
  await mk('PUT', `/v1/subscriptions/${KEEP_SUB}`, { topic: KEEP_TOPIC, startAt: 'earliest' });
  await mk('POST', `/v1/topics/${KEEP_TOPIC}/messages`, {
    messages: Array.from({ length: KEEP_COUNT }, (_, i) => ({ data: keepData(i + 1), attributes: { i: String(i + 1) }, dedupId: `keep-${i + 1}` })),
  });
  const pulled = await mk('POST', `/v1/subscriptions/${KEEP_SUB}/pull`, { max: KEEP_ACKED });
  expect(pulled.body.messages.map((m: any) => m.seq)).toEqual(Array.from({ length: KEEP_ACKED }, (_, i) => i + 1));
  const acked = await mk('POST', `/v1/subscriptions/${KEEP_SUB}/ack`, { ackIds: pulled.body.messages.map((m: any) => m.ackId) });
  expect(acked.body).toEqual({ acked: KEEP_ACKED, invalid: [] });
  // Resources for the fuzz to hit.
  await mk('PUT', '/v1/topics/fza', {});
  await mk('PUT', '/v1/topics/fzb', { maxMessageBytes: 64 });
  await mk('PUT', '/v1/subscriptions/fzs', { topic: 'fza', startAt: 'earliest' });
  await mk('PUT', '/v1/queues/fzq', {});
  await mk('POST', '/v1/topics/fza/messages', { messages: [{ data: 'a' }, { data: 'b' }] });
  await mk('POST', '/v1/queues/fzq/messages', { messages: [{ data: 'a' }, { data: 'b' }] });
});

afterAll(async () => {
  await h?.stop();
  if (h) removeDataDir(h.dataDir);
});

test('random requests get a contract answer below 500, and nothing stored is lost', async () => {
  const violations = new Map<string, { count: number; example: string; routes: Set<string> }>();
  const statuses = new Map<number, number>();
  const started = Date.now();

  await fc.assert(
    fc.asyncProperty(requestArb, async (generated) => {
      const req = guard(generated);
      const res = await sendAny({ method: req.method, path: req.path, body: req.body, contentType: req.contentType });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const shown = `${req.method} ${req.path.slice(0, 160)} [${req.contentType}] ${String(req.body).slice(0, 160)} → ${res.status} ${res.text.slice(0, 200)}`;
      // Fatal: a 5xx or a dead node. fast-check stops and shrinks.
      if (res.status >= 500) throw new Error(`server error: ${shown}`);
      if (h.child.exitCode !== null || h.child.signalCode !== null) throw new Error(`the node died after: ${shown}\n${h.output().slice(-2000)}`);
      if (res.status === 200 && isKeepPublish(req)) {
        const results = JSON.parse(res.text).results as { duplicate: boolean }[];
        published += results.filter((r) => !r.duplicate).length;
      }
      const v = contractViolation(req, res);
      if (v) {
        const kind = /"code":"(FST_[A-Z_]+)"/.exec(res.text)?.[1] ?? v.slice(0, 80);
        const key = `${res.status} ${kind}`;
        const entry = violations.get(key) ?? { count: 0, example: shown, routes: new Set<string>() };
        entry.count++;
        entry.routes.add(req.route?.template ?? 'garbage paths');
        violations.set(key, entry);
      }
    }),
    {
      // HERALD_FUZZ_RUNS / HERALD_FUZZ_SEED make a longer or a replayed run.
      numRuns: Number(process.env.HERALD_FUZZ_RUNS ?? 500),
      ...(process.env.HERALD_FUZZ_SEED ? { seed: Number(process.env.HERALD_FUZZ_SEED) } : {}),
      interruptAfterTimeLimit: process.env.HERALD_FUZZ_RUNS ? 3_600_000 : 45_000,
      markInterruptAsFailure: false,
    },
  );

  // eslint-disable-next-line no-console
  console.log(`fuzz: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')} in ${Date.now() - started} ms; ${published} published to ${KEEP_TOPIC}`);

  // The node is alive and answers.
  expect(h.child.exitCode).toBeNull();
  expect((await api(h.url, 'GET', '/healthz')).status).toBe(200);

  // Every 4xx was in the contract's shape, with the code its status has.
  expect(
    [...violations].map(([key, { count, example, routes }]) => `${key}: ${count}× on ${[...routes].sort().join(', ')}; e.g. ${example}`),
    'answers outside the contract',
  ).toEqual([]);
}, 120_000);

test('after the fuzz: the protected topic holds its messages plus the counted publishes, acked stays acked, the rest pulls', async () => {
  const t = await api(h.url, 'GET', `/v1/topics/${KEEP_TOPIC}`);
  expect(t.status).toBe(200);
  expect(t.body).toMatchObject({ firstSeq: 1, lastSeq: KEEP_COUNT + published, messages: KEEP_COUNT + published });
  const s = await api(h.url, 'GET', `/v1/subscriptions/${KEEP_SUB}`);
  expect(s.status).toBe(200);
  expect(s.body).toMatchObject({ topic: KEEP_TOPIC, acked: KEEP_ACKED, delivered: KEEP_ACKED, inFlight: 0, backlog: KEEP_COUNT - KEEP_ACKED + published });
  const pulled = await api(h.url, 'POST', `/v1/subscriptions/${KEEP_SUB}/pull`, { max: 1000 });
  expect(pulled.status).toBe(200);
  const msgs: any[] = pulled.body.messages;
  expect(msgs.slice(0, KEEP_COUNT - KEEP_ACKED).map((m) => ({ seq: m.seq, data: m.data, i: m.attributes.i, attempt: m.deliveryAttempt }))).toEqual(
    Array.from({ length: KEEP_COUNT - KEEP_ACKED }, (_, k) => {
      const seq = KEEP_ACKED + k + 1;
      return { seq, data: keepData(seq), i: String(seq), attempt: 1 };
    }),
  );
  // Nothing acked comes back, nothing twice, and no seq beyond what was published.
  const seqs = msgs.map((m) => m.seq as number);
  expect(new Set(seqs).size).toBe(seqs.length);
  expect(seqs.every((q) => q > KEEP_ACKED && q <= KEEP_COUNT + published)).toBe(true);
  expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  const acked = await api(h.url, 'POST', `/v1/subscriptions/${KEEP_SUB}/ack`, { ackIds: msgs.map((m) => m.ackId) });
  expect(acked.body).toEqual({ acked: msgs.length, invalid: [] });
  // The dedup ids of the protected messages are still remembered.
  const dup = await api(h.url, 'POST', `/v1/topics/${KEEP_TOPIC}/messages`, { messages: [{ data: 'again', dedupId: 'keep-1' }] });
  expect(dup.body.results[0]).toMatchObject({ seq: 1, duplicate: true });
});
