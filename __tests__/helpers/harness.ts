import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { loadConfig, type Config } from '../../server/config';
import type { Logger } from '../../server/logger';
import type { Entry, ServerMessage } from '../../server/protocol/wire';
import { isFinished } from '../../server/protocol/status';
import { startServer, type ServerHandle, type StartOptions } from '../../server/server';

/** A fresh temp folder, removed by the returned `cleanup`. */
export async function tempDir(prefix = 'md-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}

/** Polls `check` until it returns a truthy value, failing after `timeoutMs` with `what`. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Waits until a download has finished (completed, error or cancelled) and returns its entry. */
export function settled(s: Pick<ServerHandle, 'store'>, id: string, timeoutMs = 10_000): Promise<Entry> {
  return waitFor(() => {
    const e = s.store.getById(id);
    return e && isFinished(e.status) ? e : undefined;
  }, `download ${id} to finish`, timeoutMs);
}

/** A logger that keeps every line, so tests can assert what was (not) logged. */
export function captureLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) };
}

export interface TestServer extends ServerHandle {
  config: Readonly<Config>;
  dir: string;
  modelsDir: string;
  statusFile: string;
  log: ReturnType<typeof captureLogger>;
  /** Closes the server and removes its temp folder (unless keepDir). */
  stop(options?: { keepDir?: boolean }): Promise<void>;
  api(method: string, urlPath: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
}

/**
 * A real server on port 0 with its own temp models folder and status file, tuned for tests
 * (short stall timeout, fast retries). `env` adds or overrides configuration variables.
 */
export async function startTestServer(
  env: Record<string, string> = {},
  options: Partial<StartOptions> & { dir?: string } = {},
): Promise<TestServer> {
  const made = options.dir ? undefined : await tempDir();
  const dir = options.dir ?? made!.dir;
  // One connection unless a test asks for more: most tests script the requests of one stream.
  const config = loadConfig({ PORT: '0', CONNECTIONS: '1', MODELS_DIR: path.join(dir, 'models'), STATUS_FILE: path.join(dir, 'status.json'), CATALOG_FILE: path.join(dir, 'catalog.json'), ...env }, dir);
  const log = captureLogger();
  const handle = await startServer(config, {
    log,
    writeIntervalMs: 100,
    ...options,
    downloader: { stallMs: 2000, retry: { baseMs: 50, maxMs: 400 }, progressIntervalMs: 50, ...options.downloader },
  });
  const api: TestServer['api'] = async (method, urlPath, body, headers = {}) => {
    const res = await fetch(handle.url + urlPath, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed };
  };
  return {
    ...handle,
    config,
    dir,
    modelsDir: config.modelsDir,
    statusFile: config.statusFile,
    log,
    api,
    stop: async ({ keepDir = false } = {}) => {
      await handle.close();
      if (made && !keepDir) await made.cleanup();
    },
  };
}

/** A WebSocket client that records every message, with waits on them. */
export interface TestSocket {
  ws: WebSocket;
  messages: ServerMessage[];
  /** The latest state of each download, from the snapshot and the updates since. */
  state: Map<string, Entry>;
  next(pred: (m: ServerMessage) => boolean, timeoutMs?: number): Promise<ServerMessage>;
  close(): Promise<void>;
}

export async function connectWs(url: string, options: WebSocket.ClientOptions = {}): Promise<TestSocket> {
  const ws = new WebSocket(url.replace(/^http/, 'ws') + (url.includes('/ws') ? '' : '/ws'), options);
  const messages: ServerMessage[] = [];
  const state = new Map<string, Entry>();
  const waiters: Array<{ pred: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }> = [];
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as ServerMessage;
    messages.push(m);
    if (m.type === 'snapshot') {
      state.clear();
      for (const e of m.downloads) state.set(e.id, e);
    } else if (m.type === 'update') state.set(m.download.id, m.download);
    else if (m.type === 'removed') state.delete(m.id);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  await once(ws, 'open');
  return {
    ws,
    messages,
    state,
    next: (pred, timeoutMs = 10_000) => {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching WebSocket message within ${timeoutMs} ms; got ${messages.length} messages`)), timeoutMs);
        waiters.push({ pred, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      });
    },
    close: async () => {
      if (ws.readyState === WebSocket.CLOSED) return;
      const closed = once(ws, 'close');
      ws.close();
      await closed;
    },
  };
}
