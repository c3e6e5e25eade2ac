/**
 * Child processes of the peer drivers (rabbitmq-server, nats-server, rabbitmqctl), the Debian
 * packages they come from, and their versions. Only processes spawned here are ever signalled, by
 * their own pid: the benchmark never stops a system service or anything it did not start.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface Spawned {
  name: string;
  child: ChildProcess;
  /** Everything it printed (the last 64 KiB), for error messages. */
  output(): string;
  gone(): boolean;
  exited: Promise<void>;
}

export function spawnLogged(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Spawned {
  const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString();
    if (out.length > 65_536) out = out.slice(-65_536);
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
  let isGone = false;
  const exited = new Promise<void>((r) => {
    child.once('exit', () => {
      isGone = true;
      r();
    });
    child.once('error', (e) => {
      out += `\n[spawn error] ${e.message}`;
      isGone = true;
      r();
    });
  });
  return { name, child, output: () => out, gone: () => isGone, exited };
}

/** SIGTERM our child, SIGKILL after `graceMs`; resolves when it has exited. */
export async function stopSpawned(p: Spawned, graceMs = 15_000): Promise<void> {
  if (p.gone()) return;
  p.child.kill('SIGTERM');
  const t = setTimeout(() => {
    if (!p.gone()) p.child.kill('SIGKILL');
  }, graceMs);
  await p.exited;
  clearTimeout(t);
}

/** Runs a command to completion; returns its output, throws with the output on failure or timeout. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): string {
  try {
    return execFileSync(cmd, args, { env, encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.message.split('\n')[0]}\n${(err.stdout ?? '') + (err.stderr ?? '')}`.trim());
  }
}

/** Async `run` (so that a slow rabbitmqctl does not stall the event loop). */
export function runAsync(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawnLogged(cmd, cmd, args, env);
    const t = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
    void p.exited.then(() => {
      clearTimeout(t);
      if (p.child.exitCode === 0) resolve(p.output());
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${p.child.exitCode ?? p.child.signalCode}: ${p.output().trim().slice(-2000)}`));
    });
  });
}

/**
 * Makes sure the Debian packages providing `binaries` are installed: when a binary is missing, runs
 * `apt-get install -y -qq <packages>` (as root, or through `sudo -n`) and says so. Returns an error
 * description instead of throwing, so that the other peers still run.
 */
export function ensureDebianPackages(need: { binary: string; pkg: string }[]): string | undefined {
  const missing = need.filter((n) => !existsSync(n.binary));
  if (missing.length === 0) return undefined;
  const pkgs = [...new Set(missing.map((m) => m.pkg))];
  const asRoot = process.getuid?.() === 0;
  const cmd = asRoot ? 'apt-get' : 'sudo';
  const args = [...(asRoot ? [] : ['-n', 'apt-get']), 'install', '-y', '-qq', ...pkgs];
  console.log(`[peers] ${missing.map((m) => m.binary).join(', ')} missing: ${cmd} ${args.join(' ')}`);
  try {
    execFileSync(cmd, args, { stdio: 'inherit', timeout: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch (e) {
    return `apt-get install ${pkgs.join(' ')} failed: ${(e as Error).message.split('\n')[0]}`;
  }
  const still = need.filter((n) => !existsSync(n.binary));
  return still.length ? `still missing after apt-get: ${still.map((s) => s.binary).join(', ')}` : undefined;
}

/** The installed version of a Debian package, or '?'. */
export function debVersion(pkg: string): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || '?';
  } catch {
    return '?';
  }
}
