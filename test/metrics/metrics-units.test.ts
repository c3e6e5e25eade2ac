// Goal: the pieces under the metrics: the label cap admits the first N names and sends the rest to
// "_other" (and gives places back), publish-time checkpoints stay bounded and answer within a batch's
// time, weighted histogram samples keep counts, and the exposition these types print is what
// Prometheus accepts (promtool check metrics, when it is installed; test/metrics/prometheus.test.ts
// requires it). On a real node, 105 subscriptions give at most 100 subscription label values plus
// "_other", and a deleted subscription's series go at the next scrape.
// Method: the classes directly; one real node process for the cap end to end.
import { spawnSync } from 'node:child_process';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { LabelCap, metricLimits, otherLabelValue } from '../../src/metrics/label-cap.js';
import { CollectedMetric, Counter, Histogram, UpDownGauge } from '../../src/metrics/metric-types.js';
import { PublishTimes, publishTimeLimits } from '../../src/metrics/publish-times.js';
import { apiOk, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

test('the label cap: first N names keep their value, later ones are "_other", deleted ones give their place back', () => {
  const cap = new LabelCap(3);
  expect(['a', 'b', 'c', 'd', 'a'].map((n) => cap.label(n))).toEqual(['a', 'b', 'c', otherLabelValue, 'a']);
  expect(cap.retain((n) => n !== 'b')).toEqual(['b']);
  expect(cap.label('d')).toBe('d');
  expect(cap.label('e')).toBe(otherLabelValue);
  expect(cap.size).toBe(3);
  expect(metricLimits.labelValuesMax).toBe(100);
});

test('publish times: a seq gets its batch time; unknown before the first checkpoint; bounded memory; re-created topics start over', () => {
  const t = new PublishTimes();
  t.note('x', 1, 10, 1000);
  t.note('x', 11, 20, 1005);
  t.note('x', 21, 25, 1005); // same millisecond: one checkpoint
  expect(t.timeOf('x', 1)).toBe(1000);
  expect(t.timeOf('x', 10)).toBe(1000);
  expect(t.timeOf('x', 11)).toBe(1005);
  expect(t.timeOf('x', 25)).toBe(1005);
  expect(t.timeOf('x', 26)).toBeUndefined();
  expect(t.timeOf('y', 1)).toBeUndefined();

  const u = new PublishTimes();
  u.note('z', 101, 110, 0);
  expect(u.timeOf('z', 100)).toBeUndefined();
  // Many batches: the newest keep their exact time; older ones get a later checkpoint's time, never an earlier one.
  const batches = publishTimeLimits.checkpointsPerTopicMax * 8;
  for (let i = 1; i < batches; i++) u.note('z', 101 + i * 10, 110 + i * 10, i);
  expect(u.timeOf('z', 110 + (batches - 1) * 10)).toBe(batches - 1);
  expect(u.timeOf('z', 105 + (batches - 2) * 10)).toBe(batches - 2);
  for (let i = 0; i < batches; i += 7) {
    const time = u.timeOf('z', 105 + i * 10)!;
    expect(time).toBeGreaterThanOrEqual(i);
    // Coarse only in proportion to age: within a tenth of it.
    expect(time - i).toBeLessThanOrEqual(Math.max(1, (batches - 1 - i) / 10));
  }
  // The topic was deleted and created again: seqs start over.
  u.note('z', 1, 5, 99_999);
  expect(u.timeOf('z', 3)).toBe(99_999);
});

test('metric types print what Prometheus reads: cumulative buckets, weighted observations, removable series', async () => {
  const registry = new Registry();
  const c = new Counter('t_things_total', 'Things.', ['subscription', 'mode']);
  c.child('s1', 'pull').inc(5);
  c.child('s1', 'pull').inc();
  c.child('s2', 'push').inc(2);
  c.removeWhere('subscription', 's2');
  const h = new Histogram('t_latency_seconds', 'Latency.', [], [0.1, 1]);
  h.child().observe(0.05);
  h.child().observe(0.5, 3);
  h.child().observe(7);
  const g = new UpDownGauge('t_open', 'Open.', ['kind']);
  g.add(1, 'a');
  g.add(1, 'a');
  g.add(-1, 'a');
  const cm = new CollectedMetric('t_backlog_messages', 'Backlog.', ['topic'], () => [[['x'], 4]]);
  for (const m of [c, h, g, cm]) registry.registerMetric(m as unknown as Parameters<typeof registry.registerMetric>[0]);
  const text = await registry.metrics();
  expect(text).toContain('t_things_total{subscription="s1",mode="pull"} 6');
  expect(text).not.toContain('s2');
  expect(text).toContain('t_latency_seconds_bucket{le="0.1"} 1');
  expect(text).toContain('t_latency_seconds_bucket{le="1"} 4');
  expect(text).toContain('t_latency_seconds_bucket{le="+Inf"} 5');
  expect(text).toContain('t_latency_seconds_sum 8.55');
  expect(text).toContain('t_latency_seconds_count 5');
  expect(text).toContain('t_open{kind="a"} 1');
  expect(text).toContain('t_backlog_messages{topic="x"} 4');
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (promtool.error === undefined) expect(`${promtool.stdout}${promtool.stderr}`.trim()).toBe('');
});

let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald();
});
afterAll(async () => {
  await h?.stop();
  if (h) removeDataDir(h.dataDir);
});

test('on a real node, 105 subscriptions give at most 100 label values plus "_other"; deleting one frees its place', async () => {
  await apiOk(h.url, 'PUT', '/v1/topics/wide', {});
  const names = Array.from({ length: metricLimits.labelValuesMax + 5 }, (_, i) => `sub-${String(i).padStart(3, '0')}`);
  for (const name of names) await apiOk(h.url, 'PUT', `/v1/subscriptions/${name}`, { topic: 'wide' });
  await apiOk(h.url, 'POST', '/v1/topics/wide/messages', { messages: [{ data: 'a' }, { data: 'b' }] });
  const labels = async () => {
    const text = await (await fetch(`${h.url}/metrics`)).text();
    const lines = text.split('\n').filter((l) => l.startsWith('herald_subscription_backlog_messages{'));
    return new Map(lines.map((l) => [/subscription="([^"]+)"/.exec(l)![1]!, Number(l.split(' ').pop())]));
  };
  const first = await labels();
  expect(first.size).toBe(metricLimits.labelValuesMax + 1);
  // Names are first met in order at the first scrape: the last five are summed under "_other".
  expect(first.get(otherLabelValue)).toBe(5 * 2);
  expect(first.get('sub-000')).toBe(2);
  expect(first.has('sub-104')).toBe(false);

  await apiOk(h.url, 'DELETE', '/v1/subscriptions/sub-000');
  await apiOk(h.url, 'PUT', '/v1/subscriptions/late', { topic: 'wide' });
  // The scrape that notices sub-000 is gone frees its place; the next name met takes it.
  await labels();
  const later = await labels();
  expect(later.has('sub-000')).toBe(false);
  expect(later.size).toBe(metricLimits.labelValuesMax + 1);
  // Capping loses nothing: the label values still add up to every subscription's backlog.
  const all = (await apiOk(h.url, 'GET', '/v1/subscriptions')).body.subscriptions as { backlog: number }[];
  expect(all.length).toBe(names.length);
  expect([...later.values()].reduce((a, b) => a + b, 0)).toBe(all.reduce((a, s) => a + s.backlog, 0));
});
