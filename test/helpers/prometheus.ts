/**
 * A real Prometheus for tests (Debian's `prometheus` and `promtool`; .ci/run installs them): started
 * on a free loopback port with its own config and TSDB in a temp dir, queried through its HTTP API,
 * stopped in afterAll. Also the PromQL rewriting the tests need to evaluate dashboard and alert
 * expressions outside Grafana and the rule evaluator.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, freePorts } from './herald-process.js';

/** Fails with what to do when a binary is missing, rather than skipping the test. */
export function requireBinary(name: string): void {
  if (spawnSync('sh', ['-c', `command -v ${name}`]).status !== 0) {
    throw new Error(`${name} is not installed: apt-get install prometheus (Debian's package has prometheus and promtool; .ci/run installs it)`);
  }
}

/** Runs promtool; resolves with its exit code and output (stdin optional). */
export function promtool(args: string[], options: { cwd?: string; input?: string } = {}): { status: number; output: string } {
  const r = spawnSync('promtool', args, { cwd: options.cwd, input: options.input, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

export interface PromResult {
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

export class TestPrometheus {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly dir: string,
    private readonly output: () => string,
  ) {}

  /** Starts Prometheus scraping `targets` (host:port) as job `herald` every second, with `ruleFiles`. */
  static async start(targets: string[], ruleFiles: string[]): Promise<TestPrometheus> {
    requireBinary('prometheus');
    const dir = mkdtempSync(join(tmpdir(), 'herald-prometheus-'));
    const [port] = await freePorts(1);
    // JSON is YAML, so the config needs no YAML writer.
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: ruleFiles,
      scrape_configs: [{ job_name: 'herald', static_configs: [{ targets }] }],
    };
    writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
    const child = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const p = new TestPrometheus(`http://127.0.0.1:${port}`, child, dir, () => out);
    try {
      await eventually(async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${out}`);
        return (await fetch(`${p.url}/-/ready`)).status === 200;
      }, 20_000, 50);
    } catch (error) {
      await p.stop();
      throw error;
    }
    return p;
  }

  /** An instant query now. Never throws on a PromQL error: `status` says it. */
  async query(expr: string): Promise<PromResult> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as PromResult;
  }

  async get<T>(path: string): Promise<T> {
    const res = await fetch(`${this.url}${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${path}: ${body.error}`);
    return body.data;
  }

  get log(): string {
    return this.output();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Turns every comparison of an expression into its `bool` form (`a > 5` → `a > bool 5`), so that it
 * returns its series whatever their values: an alert's expression returns nothing while all is well,
 * and this shows that the series it looks at exist. Label matchers (`{a!="b"}`) and strings are left.
 */
export function withBool(expr: string): string {
  let out = '';
  let braces = 0;
  let quote: string | null = null;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i]!;
    if (quote) {
      out += ch;
      if (ch === '\\') out += expr[++i] ?? '';
      else if (ch === quote) quote = null;
      continue;
    }
    if (ch === '"' || ch === "'" || ch === '`') {
      quote = ch;
      out += ch;
      continue;
    }
    if (ch === '{') braces++;
    else if (ch === '}') braces--;
    const op = braces === 0 ? /^(==|!=|>=|<=|>|<)/.exec(expr.slice(i))?.[1] : undefined;
    if (op) {
      const already = /^\s*bool\b/.test(expr.slice(i + op.length));
      out += already ? op : `${op} bool`;
      i += op.length - 1;
      continue;
    }
    out += ch;
  }
  return out;
}
