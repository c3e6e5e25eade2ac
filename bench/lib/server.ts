/**
 * Starts one Herald node as a real child process, as `npm start` does: builds the bundle
 * (`npm run build`) and runs `node dist/main.js --port 0 --data <dir>`, then waits for its listening
 * line. With `profileDir`, the server runs with `--cpu-prof` and writes its main thread's profile
 * there when it exits.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { nodeProcessEnv } from '../../src/runtime/process-env.js';

export const repoRoot = resolve(import.meta.dirname, '../..');

/**
 * The checkout whose src/main.ts is started: this repository, or HERALD_BENCH_ROOT (e.g. an exported
 * commit, `git archive HEAD | tar -x -C dir` with node_modules linked in) so that a benchmark measures
 * a fixed version while the working tree changes.
 */
export const serverRoot = resolve(process.env.HERALD_BENCH_ROOT ?? repoRoot);

export interface BenchServer {
  url: string;
  /** The pid of the child process (the server itself: no wrapper). */
  wrapperPid: number;
  /** The pid of the node process that serves HTTP. */
  serverPid: number;
  dataDir: string;
  output(): string;
  /** SIGTERM, wait for exit; returns the server's .cpuprofile path if profiling. */
  stop(): Promise<string | undefined>;
}

export interface StartOptions {
  profileDir?: string;
  /** Keep the data dir after stop (default: removed). */
  keepData?: boolean;
}

/** Note: the data dir name must not contain a '.': lmdb-js treats a path with an extension as a file. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}


export async function startServer(options: StartOptions = {}): Promise<BenchServer> {
  const dataDir = tempDir('herald-bench-');
  const env = { ...process.env, ...nodeProcessEnv };
  const nodeFlags = options.profileDir ? ['--cpu-prof', '--cpu-prof-dir', options.profileDir] : [];
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: serverRoot, stdio: 'inherit' });
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeFlags, '--enable-source-maps', '--expose-gc', 'dist/main.js', '--port', '0', '--data', dataDir],
    { cwd: serverRoot, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const started = new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start within 30 s:\n${out}`)), 30_000);
    const onData = () => {
      const m = /herald listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolveUrl(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`herald exited with ${code} before listening:\n${out}`));
    });
  });
  let url: string;
  try {
    url = await started;
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  // No wrapper any more: the child serves.
  const wrapperPid = child.pid!;
  const serverPid = wrapperPid;
  return {
    url,
    wrapperPid,
    serverPid,
    dataDir,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => {
        process.stderr.write('herald did not stop within 60 s of SIGTERM; killing it\n');
        try {
          process.kill(serverPid, 'SIGKILL');
        } catch {
          /* gone */
        }
        child.kill('SIGKILL');
      }, 60_000);
      await exited;
      // The wrapper exits when its child does; give the profile write a moment to land anyway.
      for (let i = 0; i < 50 && isAlive(serverPid); i++) await new Promise((r) => setTimeout(r, 100));
      clearTimeout(timer);
      if (!options.keepData) rmSync(dataDir, { recursive: true, force: true });
      if (!options.profileDir) return undefined;
      const files = readdirSync(options.profileDir)
        // Thread 0 is the main thread (thread 1 is the loader-hooks thread tsx registers).
        .filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${serverPid}.0.`))
        .map((f) => join(options.profileDir!, f));
      if (files.length > 0) return files[0];
      // Fall back to the largest profile in the directory.
      const all = readdirSync(options.profileDir)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(options.profileDir!, f))
        .sort((a, b) => statSync(b).size - statSync(a).size);
      return all[0];
    },
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** VmRSS, VmHWM, RssAnon, RssFile of a process in bytes, from /proc/<pid>/status. */
export function memoryOf(pid: number): { rss: number; hwm: number; anon: number; file: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') };
}

/** User + system CPU seconds of a process, from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11] = utime, fields[12] = stime (fields 14 and 15 of stat(5), counted from state = 3).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident bytes of the mappings of files whose path ends with `suffix` (e.g. LMDB's data.mdb), from smaps. */
export function mappedRssOf(pid: number, suffix: string): number {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return NaN;
  }
  let inside = false;
  let total = 0;
  for (const line of text.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inside = line.trimEnd().endsWith(suffix);
    else if (inside && line.startsWith('Rss:')) total += Number(/(\d+) kB/.exec(line)?.[1] ?? 0) * 1024;
  }
  return total;
}

/** Bytes of the files directly in a directory. */
export function dirBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) {
    try {
      const st = statSync(join(dir, f));
      total += st.isDirectory() ? dirBytes(join(dir, f)) : st.size;
    } catch {
      /* gone */
    }
  }
  return total;
}

/** What is being measured: the server root and its git commit (with "+dirty" for local changes), or a BENCH_VERSION file. */
export function serverVersion(): string {
  try {
    const head = execFileSync('git', ['-C', serverRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['-C', serverRoot, 'status', '--porcelain', '--', 'src', 'package.json'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return `${serverRoot} @ ${head}${dirty ? ' + uncommitted changes in src/' : ''}`;
  } catch {
    try {
      return `${serverRoot} (${readFileSync(join(serverRoot, 'BENCH_VERSION'), 'utf8').trim()})`;
    } catch {
      return serverRoot;
    }
  }
}
