/**
 * What each node's storage steps did over a benchmark window, from its Prometheus `/metrics`: steps a
 * second, their mean duration, entries per step and the mean LMDB commit (with its fsyncs), and on
 * the leader the mean publish from its route to its batch's commit. This is
 * what a publish waits for on 3 nodes (a follower's step in progress, then its own), so every
 * 3-node figure comes with it.
 */

/** One scrape: series (name with labels) → value. */
export async function scrapeMetrics(baseUrl: string): Promise<Map<string, number>> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET ${baseUrl}/metrics → ${res.status}`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

const series = {
  steps: 'herald_raft_append_duration_seconds_count',
  stepSeconds: 'herald_raft_append_duration_seconds_sum',
  entries: 'herald_raft_appended_entries_total',
  commits: 'herald_storage_fsync_duration_seconds_count',
  commitSeconds: 'herald_storage_fsync_duration_seconds_sum',
  publishes: 'herald_publish_duration_seconds_count',
  publishSeconds: 'herald_publish_duration_seconds_sum',
} as const;

/**
 * Starts a window over `nodes` (label → base URL); the function it returns ends it and describes
 * each node's steps, e.g. `L 127/s 7.54 ms ×32.5 (LMDB 5.01 ms)`. A node that cannot be scraped is
 * described as such rather than failing the benchmark.
 */
export async function stepMeter(nodes: Map<string, string>): Promise<() => Promise<string>> {
  const scrapeAll = () => Promise.all([...nodes].map(async ([label, url]) => [label, await scrapeMetrics(url).catch(() => undefined)] as const));
  const before = await scrapeAll();
  const t0 = performance.now();
  return async () => {
    const seconds = (performance.now() - t0) / 1000;
    const after = await scrapeAll();
    return after
      .map(([label, a], i) => {
        const b = before[i]![1];
        if (!a || !b) return `${label} (no metrics)`;
        const d = (k: string) => (a.get(k) ?? 0) - (b.get(k) ?? 0);
        const steps = d(series.steps);
        if (steps === 0) return `${label} no steps`;
        const commits = d(series.commits);
        const lmdb = commits > 0 ? ` (LMDB ${((d(series.commitSeconds) / commits) * 1000).toFixed(2)} ms)` : '';
        const publishes = d(series.publishes);
        const publish = publishes > 0 ? `, publish route→commit ${((d(series.publishSeconds) / publishes) * 1000).toFixed(2)} ms` : '';
        return `${label} ${Math.round(steps / seconds)}/s ${((d(series.stepSeconds) / steps) * 1000).toFixed(2)} ms ×${(d(series.entries) / steps).toFixed(1)}${lmdb}${publish}`;
      })
      .join(', ');
  };
}
