import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { createApp } from './api/app';
import { Catalog } from './catalog/catalog';
import type { Config } from './config';
import { Downloader, type AddOptions, type DownloaderOptions } from './downloader/downloader';
import { acquireLock, LockedError, type InstanceLock } from './store/instance-lock';
import { intake } from './sources/intake';
import type { Logger } from './logger';
import { resolveDest } from './disk/paths';
import type { AddRequest, AddResult } from './protocol/wire';
import { createSourceMetadata, createSources } from './sources';
import { prepareCivitai } from './sources/civitai-intake';
import { intakeRepo } from './sources/groups';
import { roomCheck } from './sources/free-space';
import { mirrorUrl } from './sources/mirror';
import { createProbe } from './sources/probe';
import { StatusStore } from './store/status-store';
import { WsHub } from './api/ws-hub';
import { Fleet, type FleetTuning } from './fleet/fleet';

export interface ServerHandle {
  url: string;
  port: number;
  store: StatusStore;
  downloader: Downloader;
  hub: WsHub;
  /** Fleet mode (FLEET_DIR set): this server's membership of the fleet. */
  fleet?: Fleet;
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
  /** Bytes a WebSocket client may hold in the server before it is dropped. */
  wsMaxQueuedBytes?: number;
  /** Least time between two rounds of WebSocket updates (see HubOptions.batchMs). */
  wsBatchMs?: number;
  staticDir?: string;
  /** Fleet mode's timings (tests shorten them). */
  fleet?: FleetTuning;
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
  const lock = await lockStatusFile(config, log);
  // What is open so far, so that a start failing half-way (a port in use) closes it again.
  const opened: Array<() => Promise<void>> = [];
  try {
    const store = new StatusStore({ file: config.statusFile, log, isValidDest, ...(options.writeIntervalMs ? { writeIntervalMs: options.writeIntervalMs } : {}) });
    opened.push(() => store.close());
    // Fleet mode: the name and the status file locked (across hosts: the lock above is by pid)
    // before the status file is touched; the other servers' files read.
    const fleet = config.fleet ? await Fleet.open(config, store, log, options.fleet) : undefined;
    if (fleet) opened.push(() => fleet.close());
    await store.load();
    const catalog = new Catalog({ file: config.catalogFile, modelsDir: config.modelsDir, log });
    opened.push(() => catalog.close());
    await catalog.open();
    const sources = createSources(config);
    // The service's own files may sit inside MODELS_DIR (a pod keeps everything on one volume):
    // then no download may be written over them, and the log says so once.
    const ownFiles = [config.statusFile, config.catalogFile, config.extraModelPaths, config.modelListFile].filter((f): f is string => f !== undefined);
    const inside = ownFiles.filter((f) => path.resolve(f).startsWith(path.resolve(config.modelsDir) + path.sep));
    if (inside.length > 0) {
      log.warn(`${inside.map((f) => path.relative(config.modelsDir, f)).join(', ')} inside MODELS_DIR: downloads to those names (and their lock and temp files) are refused`);
    }
    const downloader = new Downloader({
      store,
      log,
      modelsDir: config.modelsDir,
      maxConcurrent: config.maxConcurrent,
      connections: config.connections,
      staleMinutes: config.staleMinutes,
      retentionHours: config.retentionHours,
      resolveSource: sources.resolve,
      protectedFiles: ownFiles,
      proxy: config.proxy,
      ...(fleet ? { claims: fleet.claims } : {}),
      ...options.downloader,
    });
    opened.push(() => downloader.close());
    fleet?.attach(downloader);
    // HF_ENDPOINT and CIVITAI_ENDPOINT are mirrors: huggingface.co and civitai.com URLs go there.
    const mirrored = (req: AddRequest): AddRequest =>
      req && typeof req === 'object' && typeof req.url === 'string' ? { ...req, url: mirrorUrl(req.url, config) } : req;
    // Fleet mode: a new download locks its destination on the shared volume first.
    const adder = fleet ? { agent: downloader.agent, add: (r: AddRequest, o?: AddOptions) => fleet.add(r, o) } : downloader;
    const meta = createSourceMetadata(config);
    // In fleet mode the volume is shared: every server's downloads count.
    const room = roomCheck({ modelsDir: config.modelsDir, store: fleet ? { all: () => fleet.list(), get: (dest) => fleet.entryFor(dest) } : store });
    const add = async (req: AddRequest, addOptions?: AddOptions): Promise<AddResult> => {
      const prepared = await prepareCivitai(mirrored(req), { civitai: meta.civitai, log, room });
      const result = await intake(prepared.req, { downloader: adder, sources, modelsDir: config.modelsDir }, addOptions);
      return prepared.note ? { ...result, note: prepared.note } : result;
    };
    const repo = (req: AddRequest) => intakeRepo(mirrored(req), meta.hf, { add, room });
    const probe = createProbe({ sources, agent: downloader.agent });
    const app = createApp({ config, store, downloader, log, intake: add, repo, room, probe, catalog, ...(options.staticDir ? { staticDir: options.staticDir } : {}), ...(fleet ? { fleet } : {}) });
    const server = http.createServer(app.callback());
    // Long-lived streams are fine; a client that never finishes its request headers is not.
    server.headersTimeout = 30_000;
    server.requestTimeout = 60_000;
    const hub = new WsHub(server, { config, store, downloader, log, intake: add, ...(options.heartbeatMs ? { heartbeatMs: options.heartbeatMs } : {}),
      ...(fleet ? { fleet } : {}),
      ...(options.wsHighWaterMark ? { highWaterMark: options.wsHighWaterMark } : {}),
      ...(options.wsMaxQueuedBytes ? { maxQueuedBytes: options.wsMaxQueuedBytes } : {}),
      ...(options.wsBatchMs !== undefined ? { batchMs: options.wsBatchMs } : {}),
    });
    opened.push(() => hub.close());

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    // No download may fetch from this server itself (a redirect to /status, to the catalog).
    downloader.agent.refuseSelf(config.host, port);
    await fleet?.begin();
    await downloader.start();
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await hub.close();
        await downloader.close();
        await fleet?.close();
        await store.close();
        await catalog.close();
        server.closeAllConnections();
        await stopped;
        // Last: the next server may start as soon as the lock is gone, and the file is final now.
        await lock?.release();
      })());

    log.info(`Model Downloader serving ${url}/ (models in ${config.modelsDir}, status in ${config.statusFile})`);
    return { url, port, store, downloader, hub, ...(fleet ? { fleet } : {}), close };
  } catch (err) {
    for (const close of opened.reverse()) await close().catch(() => undefined);
    await lock?.release();
    throw err;
  }
}

/**
 * Takes `<status file>.lock` (see instance-lock.ts). Throws LockedError when another running server
 * uses the same status file. A lock that cannot be created at all (a read-only folder) is logged
 * and the server starts unguarded, as it did before locks: the lock must not be what stops it.
 */
async function lockStatusFile(config: Readonly<Config>, log: Logger): Promise<InstanceLock | undefined> {
  const file = `${config.statusFile}.lock`;
  try {
    return await acquireLock(file, { log, what: config.statusFile, hint: 'stop it or set STATUS_FILE to another file' });
  } catch (err) {
    if (err instanceof LockedError) throw err;
    log.warn(`could not create the lock file ${file} (${(err as Error).message}); a second server started on the same status file would not be refused`);
    return undefined;
  }
}
