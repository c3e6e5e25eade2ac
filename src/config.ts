/** Node configuration from flags and environment variables (flags win), as API.md's "Running" fixes them. */
import { Command, InvalidArgumentError } from 'commander';

export interface NodeConfig {
  host: string;
  port: number;
  dataDir: string;
  /** Log entries between two snapshots of the broker state; fewer means a faster restart. */
  snapshotEntries: number | undefined;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is an integer 0–65535');
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer');
  return n;
}

export function parseNodeConfig(argv: string[], env: NodeJS.ProcessEnv): NodeConfig {
  const program = new Command('herald')
    .description('Herald: a pub/sub gateway with pull, webhook and WebSocket delivery')
    .option('--host <host>', 'address to listen on (HERALD_HOST)', env.HERALD_HOST ?? '127.0.0.1')
    .option('--port <port>', 'HTTP port (HERALD_PORT)', port, env.HERALD_PORT !== undefined ? port(env.HERALD_PORT) : 8080)
    .option('--data <dir>', 'data directory (HERALD_DATA_DIR)', env.HERALD_DATA_DIR ?? './data')
    .option('--snapshot-entries <n>', 'log entries between broker snapshots (HERALD_SNAPSHOT_ENTRIES)', positiveInt,
      env.HERALD_SNAPSHOT_ENTRIES !== undefined ? positiveInt(env.HERALD_SNAPSHOT_ENTRIES) : undefined)
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ host: string; port: number; data: string; snapshotEntries?: number }>();
  return { host: o.host, port: o.port, dataDir: o.data, snapshotEntries: o.snapshotEntries };
}
