import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from './app';
import { Catalog } from './catalog';
import type { Config } from './config';
import { Downloader, type DownloaderOptions } from './downloader/downloader';
import { intake } from './intake';
import type { Logger } from './logger';
import { resolveDest } from './paths';
import type { AddRequest } from './protocol';
import { createSources } from './sources';
import { StatusStore } from './status-store';
import { WsHub } from './ws-hub';

export interface ServerHandle {
  url: string;
  port: number;
  store: StatusStore;
  downloader: Downloader;
  hub: WsHub;
  /** Stops accepting work, aborts transfers keeping their `.part`, flushes the status file. Idempotent. */
  close(): Promise<void>;
}

export interface StartOptions {
  log: Logger;
  /** Tuning for tests (short stall timeouts, fast retries). */
  downloader?: Partial<Omit<DownloaderOptions, 'store' | 'log' | 'modelsDir'>>;
  /** @default 250 */
  writeIntervalMs?: number;
  heartbeatMs?: number;
  /** Bytes queued for a WebSocket client beyond which its updates are coalesced. */
  wsHighWaterMark?: number;
  staticDir?: string;
}

/** Wires the store, downloader, app and hub, and listens. The one factory main.ts and the tests share. */
export async function startServer(config: Readonly<Config>, options: StartOptions): Promise<ServerHandle> {
  const { log } = options;
  const isValidDest = (dest: string): boolean => {
    const slash = dest.lastIndexOf('/');
    try {
      resolveDest(config.modelsDir, dest.slice(0, slash), dest.slice(slash + 1));
      return true;
    } catch {
      return false;
    }
  };
  const store = new StatusStore({ file: config.statusFile, log, isValidDest, ...(options.writeIntervalMs ? { writeIntervalMs: options.writeIntervalMs } : {}) });
  await store.load();
  const catalog = new Catalog({ file: config.catalogFile, modelsDir: config.modelsDir, log });
  await catalog.open();
  const sources = createSources(config);
  const downloader = new Downloader({
    store,
    log,
    modelsDir: config.modelsDir,
    maxConcurrent: config.maxConcurrent,
    connections: config.connections,
    staleMinutes: config.staleMinutes,
    retentionHours: config.retentionHours,
    resolveSource: sources.resolve,
    ...options.downloader,
  });
  const add = (req: AddRequest) => intake(req, { downloader, sources, modelsDir: config.modelsDir });
  const app = createApp({ config, store, downloader, log, intake: add, catalog, ...(options.staticDir ? { staticDir: options.staticDir } : {}) });
  const server = http.createServer(app.callback());
  // Long-lived streams are fine; a client that never finishes its request headers is not.
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000;
  const hub = new WsHub(server, { config, store, downloader, log, intake: add, ...(options.heartbeatMs ? { heartbeatMs: options.heartbeatMs } : {}),
    ...(options.wsHighWaterMark ? { highWaterMark: options.wsHighWaterMark } : {}),
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await downloader.start();
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      await hub.close();
      await downloader.close();
      await store.close();
      await catalog.close();
      server.closeAllConnections();
      await stopped;
    })());

  log.info(`Model Downloader serving ${url}/ (models in ${config.modelsDir}, status in ${config.statusFile})`);
  return { url, port, store, downloader, hub, close };
}
