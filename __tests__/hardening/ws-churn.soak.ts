/**
 * WebSocket churn under load: 1000 subscribers (10 waves of 100) connect, get their snapshot and
 * go away — half closing politely, half dropping the connection — while downloads run (before every
 * wave, new ones are started until three are active). The server keeps serving (API and downloads),
 * every subscriber's first message is the snapshot, and afterwards nothing is left of them.
 *
 * Twice: in this process (the hub, the store's listeners, this process's sockets and timers, and
 * jest's --detectOpenHandles after stop()), and as the built server in a child process, as
 * `npm start` runs it, for its memory. A memory figure is only worth comparing after a full garbage
 * collection (else it says when V8 last collected, not what is alive), so the child runs with its
 * inspector on (NODE_OPTIONS=--inspect=127.0.0.1:0) and the test asks it for one, through the
 * DevTools protocol, before reading its V8 heap and its VmRSS (/proc/<pid>/status); the same channel
 * reads the hub's client count in the child.
 *
 * How this was checked to fail without its protection: with ws-hub.ts not deleting a client on
 * 'close', the hub still counted the first wave's 100 clients and both tests failed there; with the
 * closed clients forgotten by the hub but kept in a global array, the child's V8 heap after a full
 * GC ended 3.6 MB above its baseline (RSS 11.6 MB) where clean runs end 0.6 MB above it (0.8 MB
 * after 3000 subscribers: a fixed cost, not one per subscriber). So the heap bound, 2 MB (2 KB per
 * subscriber), catches a closed connection kept alive; the RSS bound, 40 MB, only a gross leak such
 * as buffers kept per client.
 */
import crypto from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import type { Entry, ServerMessage } from '../../server/protocol/wire';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startFileServer, type FileInfo, type FileServer } from '../helpers/file-server';
import { connectWs, startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';
import { ACTIVE_STATUSES, isFinished } from '../../server/protocol/status';

const WAVES = 10;
const PER_WAVE = 100;
const MB = 1024 * 1024;

let files: FileServer;
beforeAll(async () => {
  files = await startFileServer();
});
afterAll(async () => {
  await files.close();
});

/** Opens a subscriber and resolves with it once its first message (which must be the snapshot) arrived. */
function subscribe(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws');
    ws.once('message', (data) => {
      const first = JSON.parse(data.toString()) as ServerMessage;
      if (first.type === 'snapshot') resolve(ws);
      else reject(new Error(`the first message was ${first.type}, not the snapshot`));
    });
    ws.on('error', reject);
  });
}

const api = async (url: string, method: string, urlPath: string, body?: unknown): Promise<any> =>
  (await fetch(url + urlPath, { method, headers: body ? { 'content-type': 'application/json' } : {}, ...(body ? { body: JSON.stringify(body) } : {}) })).json();

let fileCount = 0;
const ACTIVE = ACTIVE_STATUSES;

/**
 * Keeps downloads running through the churn: starts new ones until three are active. Each takes
 * about 8 s (8 MB at 1 MB/s), longer than a wave.
 */
async function topUp(url: string, started: Map<string, FileInfo>): Promise<void> {
  const { downloads } = (await api(url, 'GET', '/api/downloads')) as { downloads: Entry[] };
  for (let n = downloads.filter((e) => ACTIVE.includes(e.status)).length; n < 3; n++) {
    const f = files.addFile(`/churn-${++fileCount}.safetensors`, { size: 8_000_000, throttle: 1_000_000 });
    const res = (await api(url, 'POST', '/api/downloads', { url: f.url, folder: 'loras', sha256: f.sha256 })) as { download: Entry };
    started.set(res.download.id, f);
  }
}

/**
 * The churn itself, against a server at `url` whose hub's client count `clients()` reads; then
 * every download it started is checked complete and correct, as seen by one subscriber that stayed
 * through it all, and the hub is left empty.
 */
async function churn(url: string, clients: () => Promise<number>, modelsDir: string): Promise<void> {
  const started = new Map<string, FileInfo>();
  const earlier = Object.keys(await api(url, 'GET', '/status')).length;
  await topUp(url, started);
  const observer = await connectWs(url);
  for (let wave = 1; wave <= WAVES; wave++) {
    const t0 = Date.now();
    await topUp(url, started);
    const sockets = await Promise.all(Array.from({ length: PER_WAVE }, () => subscribe(url)));
    await waitFor(async () => (await clients()) === PER_WAVE + 1, `wave ${wave} to be counted`);
    // The server keeps serving while they are all there.
    expect(await api(url, 'GET', '/healthz')).toEqual({ ok: true });
    expect(Object.keys(await api(url, 'GET', '/status')).length).toBe(earlier + started.size);
    sockets.forEach((ws, i) => (i % 2 === 0 ? ws.close(1000, 'bye') : ws.terminate()));
    await waitFor(async () => (await clients()) === 1, `wave ${wave} to be forgotten`);
    const { downloads } = (await api(url, 'GET', '/api/downloads')) as { downloads: Entry[] };
    const active = downloads.filter((e) => ACTIVE.includes(e.status)).map((e) => `${e.status} ${e.progress}%`);
    console.log(`wave ${wave}: ${PER_WAVE} in and out in ${Date.now() - t0} ms; ${active.length} downloads active: ${active.join(', ')}`);
  }

  // Every download ends complete and correct.
  const done = await waitFor(async () => {
    const { downloads } = (await api(url, 'GET', '/api/downloads')) as { downloads: Entry[] };
    const ours = downloads.filter((e) => started.has(e.id));
    return ours.every((e) => isFinished(e.status)) ? ours : undefined;
  }, 'every download to finish', 60_000, 200);
  expect(done).toHaveLength(started.size);
  for (const e of done) {
    const f = started.get(e.id)!;
    expect(e).toMatchObject({ status: 'completed', sha256: f.sha256 });
    const data = await fs.readFile(path.join(modelsDir, e.dest));
    expect(crypto.createHash('sha256').update(data).digest('hex')).toBe(f.sha256);
  }
  // The one subscriber that stayed saw every download through, in seq order.
  await waitFor(() => [...started.keys()].every((id) => observer.state.get(id)?.status === 'completed'), 'the observer to see every download completed');
  const seqs = observer.messages.map((m) => (m as { seq: number }).seq);
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
  await observer.close();
  await waitFor(async () => (await clients()) === 0, 'the hub to be empty');
  console.log(`${started.size} downloads ran through the churn`);
}

describe('in this process', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ MAX_CONCURRENT: '3' });
  });
  afterAll(async () => {
    await srv.stop();
  });

  /** Counts of the live handles of this process by kind (TCPSocketWrap, Timeout, …). */
  const handles = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const kind of process.getActiveResourcesInfo()) out[kind] = (out[kind] ?? 0) + 1;
    return out;
  };

  test(`${WAVES * PER_WAVE} subscribers come and go while downloads run; no client, listener, socket or timer of them is left`, async () => {
    const listeners = () => ({ update: srv.store.listenerCount('update'), removed: srv.store.listenerCount('removed'), reset: srv.store.listenerCount('reset') });
    const before = { listeners: listeners(), handles: handles() };
    await churn(srv.url, async () => srv.hub.stats().length, srv.modelsDir);
    expect(listeners()).toEqual(before.listeners);
    // No socket or timer left behind by the churn (the file server's and the store's own are in both counts).
    await waitFor(() => (handles().TCPSocketWrap ?? 0) <= (before.handles.TCPSocketWrap ?? 0), 'the sockets to close', 10_000);
    await waitFor(() => (handles().Timeout ?? 0) <= (before.handles.Timeout ?? 0) + 2, 'the timers to end', 10_000);
    console.log(`handles before ${JSON.stringify(before.handles)}, after ${JSON.stringify(handles())}`);
  });
});

/** The DevTools protocol of a child started with --inspect: what the test needs of it. */
interface Inspector {
  /** `fn` called with `this` = the array of every live WsHub of the child; its JSON-able result. */
  onHubs<T>(fn: string): Promise<T>;
  /** `expression` evaluated in the child; its JSON-able value. */
  value<T>(expression: string): Promise<T>;
  /** Bytes in use in the V8 heap right after a full garbage collection. */
  heapAfterGc(): Promise<number>;
  close(): Promise<void>;
}

async function inspect(child: ChildServer): Promise<Inspector> {
  const address = await waitFor(() => /Debugger listening on (ws:\/\/\S+)/.exec(child.output())?.[1], 'the inspector address');
  const ws = new WebSocket(address);
  ws.on('error', () => undefined);
  await once(ws, 'open');
  let lastId = 0;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string } };
    const p = m.id === undefined ? undefined : pending.get(m.id);
    if (!p) return;
    pending.delete(m.id!);
    if (m.error) p.reject(new Error(`inspector: ${m.error.message}`));
    else p.resolve(m.result);
  });
  const call = (method: string, params: object = {}): Promise<any> =>
    new Promise((resolve, reject) => {
      pending.set(++lastId, { resolve, reject });
      ws.send(JSON.stringify({ id: lastId, method, params }));
    });
  const thrown = (r: { exceptionDetails?: { text: string; exception?: { description?: string } } }): void => {
    if (r.exceptionDetails) throw new Error(`in the child: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
  };
  return {
    onHubs: async (fn) => {
      // Found by prototype in the child's heap; the references go with their object group, so
      // that they hold nothing alive for the next heap measurement.
      try {
        const proto = await call('Runtime.evaluate', { expression: "process.mainModule.require('./api/ws-hub').WsHub.prototype", objectGroup: 'churn' });
        thrown(proto);
        const { objects } = await call('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId, objectGroup: 'churn' });
        const r = await call('Runtime.callFunctionOn', { objectId: objects.objectId, functionDeclaration: fn, returnByValue: true });
        thrown(r);
        return r.result.value;
      } finally {
        await call('Runtime.releaseObjectGroup', { objectGroup: 'churn' });
      }
    },
    value: async (expression) => {
      const r = await call('Runtime.evaluate', { expression, returnByValue: true });
      thrown(r);
      return r.result.value;
    },
    heapAfterGc: async () => {
      await call('HeapProfiler.collectGarbage');
      return ((await call('Runtime.getHeapUsage')) as { usedSize: number }).usedSize;
    },
    close: async () => {
      if (ws.readyState === WebSocket.CLOSED) return;
      const closed = once(ws, 'close');
      ws.close();
      await closed;
    },
  };
}

describe('the built server in a child process', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let child: ChildServer | undefined;
  let inspector: Inspector | undefined;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir('md-churn-'));
  });
  afterAll(async () => {
    await inspector?.close();
    await child?.kill('SIGKILL');
    await cleanup();
  });

  test(`${WAVES * PER_WAVE} subscribers come and go while downloads run; its memory returns to its baseline`, async () => {
    const modelsDir = path.join(dir, 'models');
    child = await spawnServer({
      NODE_OPTIONS: '--inspect=127.0.0.1:0',
      MAX_CONCURRENT: '3',
      MODELS_DIR: modelsDir,
      STATUS_FILE: path.join(dir, 'status.json'),
      CATALOG_FILE: path.join(dir, 'catalog.json'),
    });
    const pid = child.proc.pid!;
    inspector = await inspect(child);
    const insp = inspector;
    const rss = (): number => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
    const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
    const clients = async (): Promise<number> => (await insp.onHubs<number[]>('function () { return this.map((h) => h.stats().length); }')).reduce((a, b) => a + b, 0);
    const listeners = (): Promise<unknown> => insp.onHubs("function () { return this.map((h) => ['update', 'removed', 'reset'].map((e) => h.o.store.listenerCount(e))); }");
    const resources = async (): Promise<Record<string, number>> => {
      const out: Record<string, number> = {};
      for (const kind of await insp.value<string[]>('process.getActiveResourcesInfo()')) out[kind] = (out[kind] ?? 0) + 1;
      return out;
    };

    // Warm up first, so that code compiled and caches filled on first use do not count as growth:
    // a download to its end, and a wave of subscribers in and out.
    const warm = files.addFile('/warm-up.safetensors', { size: 1_000_000 });
    const { download } = (await api(child.url, 'POST', '/api/downloads', { url: warm.url, folder: 'vae', sha256: warm.sha256 })) as { download: Entry };
    await waitFor(async () => (await api(child!.url, 'GET', `/api/downloads/${download.id}`)).download.status === 'completed', 'the warm-up download');
    const warmSockets = await Promise.all(Array.from({ length: PER_WAVE }, () => subscribe(child!.url)));
    warmSockets.forEach((ws, i) => (i % 2 === 0 ? ws.close(1000, 'bye') : ws.terminate()));
    await waitFor(async () => (await clients()) === 0, 'the warm-up subscribers to be forgotten');
    const before = { heap: await insp.heapAfterGc(), rss: rss(), fds: fds(), listeners: await listeners(), resources: await resources() };
    expect(before.listeners).toEqual([[1, 1, 1]]);

    await churn(child.url, clients, modelsDir);

    expect(await listeners()).toEqual(before.listeners);
    // Its sockets (the subscribers', and the test's HTTP keep-alive ones, closed by the server when idle) and timers.
    await waitFor(() => fds() <= before.fds, `the child's file descriptors to be back to ${before.fds}`, 15_000);
    await waitFor(async () => ((await resources()).TCPSocketWrap ?? 0) <= (before.resources.TCPSocketWrap ?? 0), 'its sockets to close', 15_000);
    await waitFor(async () => ((await resources()).Timeout ?? 0) <= (before.resources.Timeout ?? 0) + 2, 'its timers to end', 15_000);
    // Memory, each after a full GC: bounds (see the top) that 1000 subscribers kept alive would exceed.
    let after = { heap: 0, rss: 0 };
    const within = await waitFor(async () => {
      after = { heap: await insp.heapAfterGc(), rss: rss() };
      return after.heap <= before.heap + 2 * MB && after.rss <= before.rss + 40 * MB;
    }, 'the memory to return near its baseline', 15_000, 500).catch(() => false);
    console.log(
      `child memory after a full GC: V8 heap ${(before.heap / MB).toFixed(1)} MB before the churn, ${(after.heap / MB).toFixed(1)} MB after; ` +
        `RSS ${(before.rss / MB).toFixed(1)} MB before, ${(after.rss / MB).toFixed(1)} MB after; fds ${before.fds} before, ${fds()} after; ` +
        `resources before ${JSON.stringify(before.resources)}, after ${JSON.stringify(await resources())}`,
    );
    expect(within).toBe(true);
    expect(after.heap - before.heap).toBeLessThanOrEqual(2 * MB);
    expect(after.rss - before.rss).toBeLessThanOrEqual(40 * MB);

    await inspector.close();
    inspector = undefined;
    expect(await child.kill('SIGTERM')).toBe(0);
    child = undefined;
  });
});
