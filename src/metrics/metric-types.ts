/**
 * The three metric shapes Herald exports, small enough for its hot paths. prom-client's own Counter
 * and Histogram hash a labels object on every call (about 0.3–0.8 µs); here a caller keeps the child
 * for its label values and an increment or observation is a few additions. Each class renders itself
 * in the shape prom-client's Registry prints (`get()` → name, help, type, values), so all of them sit
 * in the one registry that `/metrics` serves, beside Node's process metrics.
 *
 * Label values are given in the order of `labelNames`. Capping them (label-cap.ts) is the caller's job.
 */

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}
export interface MetricFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Sample[];
  aggregator: 'sum';
}

/** What prom-client's Registry needs of a metric (it is duck-typed). */
export interface Exportable {
  readonly name: string;
  get(): MetricFamily | Promise<MetricFamily>;
}

const keySeparator = '\u0000';

function labelsOf(names: readonly string[], values: readonly string[]): Labels {
  const labels: Labels = {};
  for (let i = 0; i < names.length; i++) labels[names[i]!] = values[i]!;
  return labels;
}

export interface CounterChild {
  inc(n?: number): void;
}

export class Counter implements Exportable {
  private readonly children = new Map<string, { values: string[]; total: number; inc(n?: number): void }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[] = [],
  ) {}

  /** The child for these label values, made (at 0) on first use. */
  child(...values: string[]): CounterChild {
    const key = values.join(keySeparator);
    let c = this.children.get(key);
    if (!c) {
      const made = {
        values,
        total: 0,
        inc(n = 1) {
          made.total += n;
        },
      };
      this.children.set(key, (c = made));
    }
    return c;
  }

  /** Drops every series whose label `labelName` has `value` (a deleted topic or subscription). */
  removeWhere(labelName: string, value: string): void {
    const i = this.labelNames.indexOf(labelName);
    for (const [key, c] of this.children) if (c.values[i] === value) this.children.delete(key);
  }

  get(): MetricFamily {
    const values: Sample[] = [];
    for (const c of this.children.values()) values.push({ labels: labelsOf(this.labelNames, c.values), value: c.total });
    return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
  }
}

export interface HistogramChild {
  observe(value: number, weight?: number): void;
}

class HistogramSeries implements HistogramChild {
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly values: string[],
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** `weight` counts one observation as several (a sample standing for the messages around it). */
  observe(value: number, weight = 1): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]! += weight;
    this.sum += value * weight;
    this.count += weight;
  }
}

export class Histogram implements Exportable {
  private readonly series = new Map<string, HistogramSeries>();
  private readonly bounds: Float64Array;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {
    this.bounds = Float64Array.from(buckets);
  }

  child(...values: string[]): HistogramChild {
    const key = values.join(keySeparator);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = new HistogramSeries(values, this.bounds)));
    return s;
  }

  get(): MetricFamily {
    const values: Sample[] = [];
    for (const s of this.series.values()) {
      const labels = labelsOf(this.labelNames, s.values);
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += s.counts[i]!;
        const le = i < this.bounds.length ? String(this.bounds[i]) : '+Inf';
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}

/** A gauge (or a counter kept elsewhere) read when scraped: `read` yields label values and a value. */
export class CollectedMetric implements Exportable {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    private readonly read: () => Iterable<[values: string[], value: number]>,
    readonly type: 'gauge' | 'counter' = 'gauge',
  ) {}

  get(): MetricFamily {
    const values: Sample[] = [];
    for (const [v, value] of this.read()) values.push({ labels: labelsOf(this.labelNames, v), value });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }
}

/** A gauge moved up and down where things happen (connections opened and closed). */
export class UpDownGauge implements Exportable {
  private readonly values = new Map<string, { values: string[]; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  add(delta: number, ...values: string[]): void {
    const key = values.join(keySeparator);
    let v = this.values.get(key);
    if (!v) this.values.set(key, (v = { values, value: 0 }));
    v.value += delta;
  }

  get(): MetricFamily {
    const out: Sample[] = [];
    for (const v of this.values.values()) out.push({ labels: labelsOf(this.labelNames, v.values), value: v.value });
    return { name: this.name, help: this.help, type: 'gauge', values: out, aggregator: 'sum' };
  }
}
