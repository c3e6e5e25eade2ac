/**
 * From validated request bodies to the broker's configurations: defaults applied (API.md's), and the
 * checks a JSON schema cannot say (word counts, time strings, ranges that depend on each other).
 */
import { limits } from '../core/limits.js';
import type { PushConfig, RetryPolicy, StartAt, SubscriptionConfig, TopicConfig } from '../core/broker/types.js';
import type { PublishItem, SubscriptionPatch } from '../core/broker/commands.js';
import { HeraldError, invalid } from './errors.js';
import { isBlockedHost } from '../delivery/ssrf.js';
import type { PublishBody, QueueBody, SubscriptionBody, SubscriptionPatchBody, TopicConfigBody } from './schemas.js';

export function topicConfig(body: TopicConfigBody | undefined): TopicConfig {
  return {
    retentionSeconds: body?.retentionSeconds ?? limits.retentionSecondsDefault,
    maxMessageBytes: body?.maxMessageBytes ?? limits.maxMessageBytesDefault,
    dedupWindowSeconds: body?.dedupWindowSeconds ?? limits.dedupWindowSecondsDefault,
  };
}

export function topicPatch(body: TopicConfigBody): Partial<TopicConfig> {
  const patch: Partial<TopicConfig> = {};
  if (body.retentionSeconds !== undefined) patch.retentionSeconds = body.retentionSeconds;
  if (body.maxMessageBytes !== undefined) patch.maxMessageBytes = body.maxMessageBytes;
  if (body.dedupWindowSeconds !== undefined) patch.dedupWindowSeconds = body.dedupWindowSeconds;
  return patch;
}

export function parseTime(value: string, field: string): number {
  // ISO-8601 with a date; Date.parse alone also takes forms like "1" that are not ISO.
  if (!/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) {
    throw invalid(`${field} must be an ISO-8601 time`);
  }
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) throw invalid(`${field} must be an ISO-8601 time`);
  return ms;
}

function checkWords(key: string, field: string): void {
  const words = key.split('.');
  if (words.length > limits.routingKeyWordsMax) throw invalid(`${field} has more than ${limits.routingKeyWordsMax} words`);
  if (words.some((w) => w.length === 0)) throw invalid(`${field} has an empty word`);
}

function retryPolicy(body: SubscriptionBody['retry']): RetryPolicy {
  if (!body) return retryPolicy({ policy: 'exponential' });
  switch (body.policy) {
    case 'exponential': {
      const policy: RetryPolicy = {
        policy: 'exponential',
        minBackoffMs: body.minBackoffMs ?? 1000,
        maxBackoffMs: body.maxBackoffMs ?? 512_000,
        multiplier: body.multiplier ?? 2,
        jitter: body.jitter ?? 0.2,
        maxAttempts: body.maxAttempts ?? null,
        maxRetrySeconds: body.maxRetrySeconds ?? 86_400,
      };
      if (policy.minBackoffMs > policy.maxBackoffMs) throw invalid('retry.minBackoffMs must not exceed retry.maxBackoffMs');
      return policy;
    }
    case 'fixed':
      return { policy: 'fixed', intervalMs: body.intervalMs ?? 20_000, maxAttempts: body.maxAttempts === undefined ? 3 : body.maxAttempts };
    default:
      return { policy: body.policy };
  }
}

/** What the node allows beyond the contract's defaults. */
export interface NormalizeOptions {
  allowPrivateWebhooks: boolean;
}

/** Headers a push request gets from Herald (framing, signature, CloudEvents, message fields). */
const reservedPushHeaders = /^(host|content-length|content-type|transfer-encoding|connection|keep-alive|upgrade|te|trailer|expect|webhook-.*|ce-.*|herald-.*)$/i;

function pushConfig(body: NonNullable<SubscriptionBody['push']>, opts: NormalizeOptions): PushConfig {
  let url: URL;
  try {
    url = new URL(body.url);
  } catch {
    throw invalid('push.url is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('push.url must be http or https');
  if (url.username || url.password) throw invalid('push.url must not carry credentials; use push.headers');
  if (!opts.allowPrivateWebhooks && isBlockedHost(url.hostname)) {
    throw invalid('push.url points at a loopback, private, link-local or metadata address (see --allow-private-webhooks)');
  }
  for (const name of Object.keys(body.headers ?? {})) {
    if (reservedPushHeaders.test(name)) throw invalid(`push.headers may not set ${name}: Herald sets it`);
  }
  return {
    url: body.url,
    headers: body.headers ?? {},
    format: body.format ?? 'json',
    timeoutMs: body.timeoutMs ?? 15_000,
    maxInFlight: body.maxInFlight ?? 64,
    rateLimitPerSecond: body.rateLimitPerSecond ?? 0,
  };
}

function filterConfig(body: SubscriptionBody['filter']): SubscriptionConfig['filter'] {
  if (!body) return null;
  for (const key of body.bindingKeys ?? []) checkWords(key, 'filter.bindingKeys');
  return { ...(body.tags ? { tags: body.tags } : {}), ...(body.bindingKeys ? { bindingKeys: body.bindingKeys } : {}) };
}

function startAt(body: SubscriptionBody['startAt']): StartAt {
  if (body === undefined || body === 'latest' || body === 'earliest') return body ?? 'latest';
  if ('seq' in body) return { seq: body.seq };
  return { time: body.time, timeMs: parseTime(body.time, 'startAt.time') };
}

export function subscriptionConfig(body: Omit<SubscriptionBody, 'topic'>, topic: string, opts: NormalizeOptions): SubscriptionConfig {
  const deadLetter = body.deadLetter ? { topic: body.deadLetter.topic, maxDeliveries: body.deadLetter.maxDeliveries ?? 16 } : null;
  if (deadLetter && deadLetter.topic === topic) throw invalid('deadLetter.topic must differ from the subscription topic');
  return {
    topic,
    push: body.push ? pushConfig(body.push, opts) : null,
    filter: filterConfig(body.filter),
    ackDeadlineSeconds: body.ackDeadlineSeconds ?? limits.ackDeadlineSecondsDefault,
    retry: retryPolicy(body.retry),
    deadLetter,
    ordered: body.ordered ?? false,
    startAt: startAt(body.startAt),
  };
}

export function subscriptionPatch(body: SubscriptionPatchBody, topic: string, opts: NormalizeOptions): SubscriptionPatch {
  const patch: SubscriptionPatch = {};
  if (body.push !== undefined) patch.push = body.push ? pushConfig(body.push, opts) : null;
  if (body.filter !== undefined) patch.filter = filterConfig(body.filter);
  if (body.ackDeadlineSeconds !== undefined) patch.ackDeadlineSeconds = body.ackDeadlineSeconds;
  if (body.retry !== undefined) patch.retry = retryPolicy(body.retry);
  if (body.deadLetter !== undefined) {
    patch.deadLetter = body.deadLetter ? { topic: body.deadLetter.topic, maxDeliveries: body.deadLetter.maxDeliveries ?? 16 } : null;
    if (patch.deadLetter && patch.deadLetter.topic === topic) throw invalid('deadLetter.topic must differ from the subscription topic');
  }
  return patch;
}

export function queueConfigs(name: string, body: QueueBody | undefined, opts: NormalizeOptions): { topic: TopicConfig; subscription: SubscriptionConfig } {
  const { retentionSeconds, maxMessageBytes, dedupWindowSeconds, ...sub } = body ?? {};
  const topicBody: TopicConfigBody = {};
  if (retentionSeconds !== undefined) topicBody.retentionSeconds = retentionSeconds;
  if (maxMessageBytes !== undefined) topicBody.maxMessageBytes = maxMessageBytes;
  if (dedupWindowSeconds !== undefined) topicBody.dedupWindowSeconds = dedupWindowSeconds;
  return { topic: topicConfig(topicBody), subscription: subscriptionConfig({ startAt: 'earliest', ...sub }, name, opts) };
}

/** What JSON escapes in a string (see PublishItem.jsonSafe). */
const needsJsonEscape = /[\u0000-\u001f"\\]/;

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes and checks a publish batch against the topic's size limit (413 for an oversized message).
 * `withoutEscapes`: the JSON it came in had no backslash, so no string in it needs escaping.
 */
export function publishItems(body: PublishBody, maxMessageBytes: number, withoutEscapes = false): PublishItem[] {
  return body.messages.map((m, i) => {
    const encoding = m.encoding ?? 'utf8';
    if (encoding === 'base64' && !base64Pattern.test(m.data)) throw invalid(`messages[${i}].data is not valid base64`);
    const data = Buffer.from(m.data, encoding);
    if (data.length > maxMessageBytes) {
      throw new HeraldError('PayloadTooLarge', `messages[${i}] is ${data.length} bytes, over the topic's maxMessageBytes (${maxMessageBytes})`);
    }
    if (m.routingKey !== undefined) checkWords(m.routingKey, `messages[${i}].routingKey`);
    const item: PublishItem = { data, encoding };
    if (encoding === 'utf8' && (withoutEscapes || !needsJsonEscape.test(m.data))) item.jsonSafe = true;
    if (m.attributes !== undefined) item.attributes = m.attributes;
    if (m.tags !== undefined) item.tags = m.tags;
    if (m.routingKey !== undefined) item.routingKey = m.routingKey;
    if (m.orderingKey !== undefined) item.orderingKey = m.orderingKey;
    if (m.dedupId !== undefined) item.dedupId = m.dedupId;
    if (m.delaySeconds) item.delaySeconds = m.delaySeconds;
    return item;
  });
}
