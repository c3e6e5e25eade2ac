/**
 * Benchmark flags as every bench/*.ts reads them (node:util parseArgs values): the command line's
 * value, else the environment's BENCH_<NAME> (upper case, dashes as underscores); flags win.
 */
type ParsedFlags = Record<string, string | boolean | (string | boolean)[] | undefined>;

export function flagText(flags: ParsedFlags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : process.env[`BENCH_${name.toUpperCase().replace(/-/g, '_')}`];
}

/** A numeric flag, or `fallback` when it is not given; negative numbers (and 0 with `positive`) are refused. */
export function numberFlag(flags: ParsedFlags, name: string, fallback: number, options: { positive?: boolean } = {}): number {
  const raw = flagText(flags, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  const ok = Number.isFinite(n) && (options.positive ? n > 0 : n >= 0);
  if (!ok) throw new Error(`--${name} must be a ${options.positive ? 'positive' : 'non-negative'} number, not ${raw}`);
  return n;
}
