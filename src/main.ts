/** `npm start`: one node on the configured port and data directory. */
import { ConfigError, parseNodeConfig } from './config.js';
import { startServer } from './server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = parseNodeConfig(process.argv.slice(2), process.env);
  } catch (error) {
    // Commander has printed its own errors; ours it has not.
    if (error instanceof ConfigError) console.error(`herald: ${error.message}`);
    const code = (error as { exitCode?: number }).exitCode;
    process.exit(code ?? 2);
  }
  const server = await startServer(config);
  console.log(`herald listening on ${server.url}`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`herald: ${signal}, stopping`);
    server.close().then(
      () => process.exit(0),
      (error) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error) => {
  console.error('herald: failed to start:', error);
  process.exit(1);
});
