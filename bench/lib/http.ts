/**
 * A thin JSON client over an undici Pool (keep-alive, one request per connection at a time). It never
 * throws on an HTTP status: callers count non-2xx answers. Only ever used against 127.0.0.1.
 */
import { Pool } from 'undici';

export interface JsonResponse<T = any> {
  status: number;
  body: T;
}

export class Client {
  readonly pool: Pool;

  constructor(
    readonly base: string,
    connections: number,
  ) {
    const u = new URL(base);
    if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost' && u.hostname !== '[::1]') {
      throw new Error(`the benchmark only talks to loopback, not ${u.hostname}`);
    }
    this.pool = new Pool(u.origin, {
      connections,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 600_000,
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
  }

  /** `body` may be a prebuilt JSON string (cheaper than serialising the same batch again). */
  async json<T = any>(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<JsonResponse<T>> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await this.pool.request({
      method,
      path,
      headers: payload !== undefined ? { 'content-type': 'application/json' } : {},
      ...(payload !== undefined ? { body: payload } : {}),
    });
    const text = await res.body.text();
    let parsed: any = text;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      /* keep the text */
    }
    return { status: res.statusCode, body: parsed as T };
  }

  /** Like `json` but throws unless the status is 2xx: for setup calls. */
  async ok<T = any>(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const r = await this.json<T>(method, path, body);
    if (r.status < 200 || r.status >= 300) {
      throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    }
    return r.body;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Counts of non-2xx answers and transport errors, by status or error code, for the report. */
export class ErrorTally {
  readonly counts = new Map<string, number>();
  readonly examples = new Map<string, string>();

  add(key: string, example?: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (example !== undefined && !this.examples.has(key)) this.examples.set(key, example.slice(0, 300));
  }

  get total(): number {
    let t = 0;
    for (const v of this.counts.values()) t += v;
    return t;
  }

  summary(): string {
    if (this.counts.size === 0) return 'none';
    return [...this.counts].map(([k, v]) => `${k}×${v}${this.examples.has(k) ? ` (${this.examples.get(k)})` : ''}`).join('; ');
  }
}
