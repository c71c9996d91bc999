/**
 * A real server for the workflow routes: the app of createApp (the production routes, security
 * checks and error middleware) on port 0, with a real status store and catalog in a temp folder,
 * and a fake probe — the one part injected. startTestServer cannot pass a probe without changing
 * server.ts, so the pieces are wired here as startServer wires them.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createApp } from '../../server/api/app';
import { Catalog } from '../../server/catalog/catalog';
import { loadConfig, type Config } from '../../server/config';
import { Downloader } from '../../server/downloader/downloader';
import type { Probe } from '../../server/workflows/plan';
import { StatusStore } from '../../server/store/status-store';
import { captureLogger, tempDir } from '../helpers/harness';

export interface PlanServer {
  url: string;
  dir: string;
  config: Readonly<Config>;
  store: StatusStore;
  /** POSTs `body` (bytes, text, or an object sent as JSON); answers the status and the parsed JSON. */
  post(urlPath: string, body: Buffer | string | object, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export async function startPlanServer(options: { env?: Record<string, string>; probe?: Probe; dir?: string } = {}): Promise<PlanServer> {
  const made = options.dir ? undefined : await tempDir('md-plan-');
  const dir = options.dir ?? made!.dir;
  const config = loadConfig(
    { PORT: '0', MODELS_DIR: path.join(dir, 'ComfyUI', 'models'), STATUS_FILE: path.join(dir, 'status.json'), CATALOG_FILE: path.join(dir, 'catalog.json'), ...options.env },
    dir,
  );
  const log = captureLogger();
  const store = new StatusStore({ file: config.statusFile, log, watch: false });
  await store.load();
  const catalog = new Catalog({ file: config.catalogFile, modelsDir: config.modelsDir, log });
  await catalog.open();
  const downloader = new Downloader({ store, log, modelsDir: config.modelsDir }); // never started: no transfer runs
  const app = createApp({ config, store, downloader, log, catalog, ...(options.probe ? { probe: options.probe } : {}) });
  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    dir,
    config,
    store,
    async post(urlPath, body, headers = {}) {
      const bytes = Buffer.isBuffer(body) ? new Uint8Array(body) : typeof body === 'string' ? body : JSON.stringify(body);
      const res = await fetch(url + urlPath, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: bytes });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, body: parsed };
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await downloader.close();
      await store.close();
      await catalog.close();
      await made?.cleanup();
    },
  };
}
