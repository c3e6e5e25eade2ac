/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): the functions with the most self time, and
 * self time by where the code lives (src/, a node_modules package, node internals, GC, idle).
 * Usable on its own: `npx tsx bench/lib/profile.ts <file.cpuprofile> [top]`.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { fmtNum, table } from './stats.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  pct: number;
  /** Share of the non-idle time. */
  busyPct: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  top: ProfileRow[];
  byModule: { module: string; selfMs: number; busyPct: number }[];
}

function shortUrl(url: string): string {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  const src = u.indexOf('/src/');
  if (src >= 0) return u.slice(src + 1);
  return u;
}

function moduleOf(frame: CallFrame): string {
  const name = frame.functionName;
  if (name === '(idle)') return '(idle)';
  if (name === '(garbage collector)') return '(garbage collector)';
  if (name === '(program)') return '(program: native / not JS)';
  const u = frame.url.replace(/^file:\/\//, '');
  if (!u) return '(native builtins, no url)';
  if (u.startsWith('node:')) return `node:${u.slice(5).split('/')[0]}`;
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = u.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  const src = u.indexOf('/src/');
  if (src >= 0) return u.slice(src + 1).split('/').slice(0, 3).join('/');
  return u;
}

/**
 * `window` (optional) keeps only samples taken between two CLOCK_MONOTONIC instants in microseconds,
 * `process.hrtime.bigint() / 1000n` of any process on this machine: V8 stamps profiles with that clock.
 */
export function summarizeProfile(file: string, topN = 15, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  // Self time per node: each sample's time delta goes to the node sampled (timeDeltas[i] is the gap
  // before samples[i], which is the usual approximation DevTools makes too).
  const selfUs = new Map<number, number>();
  if (profile.samples && profile.timeDeltas && profile.samples.length === profile.timeDeltas.length) {
    let t = profile.startTime;
    for (let i = 0; i < profile.samples.length; i++) {
      t += profile.timeDeltas[i]!;
      if (window && (t < window.fromUs || t > window.toUs)) continue;
      const id = profile.samples[i]!;
      const dt = Math.max(0, profile.timeDeltas[i + 1] ?? profile.timeDeltas[i]!);
      selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    }
  } else {
    const total = profile.endTime - profile.startTime;
    const hits = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
    for (const n of profile.nodes) selfUs.set(n.id, ((n.hitCount ?? 0) / hits) * total);
  }
  const byFunction = new Map<string, { name: string; where: string; us: number }>();
  const byModule = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    totalUs += us;
    if (f.functionName === '(idle)') idleUs += us;
    const full = f.functionName || '(anonymous)';
    const name = (full.length > 60 ? `${full.slice(0, 57)}...` : full).replace(/\|/g, '\\|');
    // tsx's transpiled src/ files report line 1 for everything: leave the line out there.
    const short = shortUrl(f.url);
    const where = !f.url ? '' : short.startsWith('src/') && f.lineNumber === 0 ? short : `${short}:${f.lineNumber + 1}`;
    const key = `${name}\u0000${where}`;
    const row = byFunction.get(key) ?? { name, where, us: 0 };
    row.us += us;
    byFunction.set(key, row);
    const mod = moduleOf(f);
    byModule.set(mod, (byModule.get(mod) ?? 0) + us);
  }
  const busyUs = Math.max(1, totalUs - idleUs);
  const top = [...byFunction.values()]
    .filter((r) => r.name !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((r) => ({ name: r.name, where: r.where, selfMs: r.us / 1000, pct: (100 * r.us) / totalUs, busyPct: (100 * r.us) / busyUs }));
  const modules = [...byModule]
    .filter(([m]) => m !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([module, us]) => ({ module, selfMs: us / 1000, busyPct: (100 * us) / busyUs }));
  return { totalMs: totalUs / 1000, idleMs: idleUs / 1000, top, byModule: modules };
}

export function formatProfile(s: ProfileSummary): string {
  const lines: string[] = [];
  lines.push(
    `profiled ${fmtNum(s.totalMs / 1000, 1)} s, idle ${fmtNum(s.idleMs / 1000, 1)} s (${fmtNum((100 * s.idleMs) / Math.max(1, s.totalMs), 0)}%); shares below are of the busy (non-idle) time`,
  );
  lines.push('');
  lines.push(
    table(
      ['#', 'self ms', 'busy %', 'function', 'location'],
      s.top.map((r, i) => [String(i + 1), fmtNum(r.selfMs), fmtNum(r.busyPct, 1), r.name, r.where]),
    ),
  );
  lines.push('');
  lines.push(table(['by module', 'self ms', 'busy %'], s.byModule.map((m) => [m.module, fmtNum(m.selfMs), fmtNum(m.busyPct, 1)])));
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: tsx bench/lib/profile.ts <file.cpuprofile> [top]');
    process.exit(2);
  }
  console.log(formatProfile(summarizeProfile(file, Number(process.argv[3] ?? 15))));
}
