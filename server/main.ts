// The only module with side effects: read the config, start, handle signals.
import { ConfigError, loadConfig } from './config';
import { consoleLogger as log } from './logger';
import { isLoopbackHost } from './api/security';
import { startServer } from './server';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`model-downloader: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  if (!isLoopbackHost(config.host) && !config.apiToken) {
    log.warn(
      `listening on ${config.host} without API_TOKEN: anyone who can reach this port can make this server write files into ${config.modelsDir}. Set API_TOKEN.`,
    );
  }
  const server = await startServer(config, { log });

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping (partial files are kept and resume on the next start)`);
    // The contract promises an exit within 5 s, whatever hangs.
    setTimeout(() => {
      log.error('shutdown took longer than 5 s; exiting anyway');
      process.exit(0);
    }, 4500).unref();
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error(`shutdown failed: ${(err as Error).message}`);
        process.exit(0);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  const e = err as NodeJS.ErrnoException;
  // Another server uses the same status file: its message says which and what to do.
  if (e.code === 'LOCKED') console.error(`model-downloader: ${e.message}`);
  else if (e.code === 'EADDRINUSE') console.error(`model-downloader: port already in use (${e.message}); set PORT to another port`);
  else console.error(`model-downloader: failed to start: ${e.stack ?? String(e)}`);
  process.exit(1);
});
