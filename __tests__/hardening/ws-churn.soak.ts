/**
 * WebSocket churn under load: 1000 subscribers (10 waves of 100) connect, get their snapshot and
 * go away — half closing politely, half dropping the connection — while three downloads run. The
 * server keeps serving (API and downloads), every subscriber's first message is the snapshot, and
 * afterwards nothing is left of them: no client in the hub, no extra store listener, no socket or
 * timer handle more than before. The heap is logged (jest gives no forced GC to measure it by).
 *
 * How this was checked to fail without its protection: with ws-hub.ts not deleting a client on
 * 'close', the hub still counted the first wave's 100 clients and the test failed there.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import type { Entry, ServerMessage } from '../../server/protocol';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { connectWs, settled, startTestServer, waitFor, type TestServer } from '../helpers/harness';

const WAVES = 10;
const PER_WAVE = 100;

let files: FileServer;
let srv: TestServer;
beforeAll(async () => {
  files = await startFileServer();
  srv = await startTestServer({ MAX_CONCURRENT: '3' });
});
afterAll(async () => {
  await srv.stop();
  await files.close();
});

/** Counts of the live handles of this process by kind (TCPSocketWrap, Timeout, …). */
const handles = (): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) out[kind] = (out[kind] ?? 0) + 1;
  return out;
};

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

test(`${WAVES * PER_WAVE} subscribers come and go while downloads run; nothing of them is left`, async () => {
  const listeners = () => ({ update: srv.store.listenerCount('update'), removed: srv.store.listenerCount('removed'), reset: srv.store.listenerCount('reset') });
  const before = { listeners: listeners(), handles: handles(), heap: process.memoryUsage().heapUsed };

  const specs = ['one', 'two', 'three'].map((name) => files.addFile(`/${name}.safetensors`, { size: 6_000_000, throttle: 500_000 }));
  const ids: string[] = [];
  for (const f of specs) ids.push((await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras', sha256: f.sha256 })).body.download.id as string);
  const observer = await connectWs(srv.url);

  for (let wave = 1; wave <= WAVES; wave++) {
    const t0 = Date.now();
    const sockets = await Promise.all(Array.from({ length: PER_WAVE }, () => subscribe(srv.url)));
    await waitFor(() => srv.hub.stats().length === PER_WAVE + 1, `wave ${wave} to be counted`);
    // The server keeps serving while they are all there.
    expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
    expect(Object.keys((await srv.api('GET', '/status')).body).length).toBe(3);
    sockets.forEach((ws, i) => (i % 2 === 0 ? ws.close(1000, 'bye') : ws.terminate()));
    await waitFor(() => srv.hub.stats().length === 1, `wave ${wave} to be forgotten`);
    const active = ids.map((id) => srv.store.getById(id)!).map((e) => `${e.status} ${e.progress}%`);
    console.log(`wave ${wave}: ${PER_WAVE} in and out in ${Date.now() - t0} ms; downloads ${active.join(', ')}`);
  }

  const done = await Promise.all(ids.map((id) => settled(srv, id, 60_000)));
  for (const [i, e] of done.entries()) {
    expect(e).toMatchObject({ status: 'completed', sha256: specs[i]!.sha256 });
    const data = await fs.readFile(path.join(srv.modelsDir, e.dest));
    expect(crypto.createHash('sha256').update(data).digest('hex')).toBe(specs[i]!.sha256);
  }
  // The one subscriber that stayed saw every download through, in seq order.
  await observer.next((m) => m.type === 'update' && m.download.id === ids[2] && m.download.status === 'completed');
  const seqs = observer.messages.map((m) => (m as { seq: number }).seq);
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
  expect(ids.every((id) => (observer.state.get(id) as Entry).status === 'completed')).toBe(true);
  await observer.close();

  await waitFor(() => srv.hub.stats().length === 0, 'the hub to be empty');
  expect(listeners()).toEqual(before.listeners);
  // No socket or timer left behind by the churn (the file server's and the store's own are in both counts).
  await waitFor(() => (handles().TCPSocketWrap ?? 0) <= (before.handles.TCPSocketWrap ?? 0), 'the sockets to close', 10_000);
  await waitFor(() => (handles().Timeout ?? 0) <= (before.handles.Timeout ?? 0) + 2, 'the timers to end', 10_000);
  console.log(`heap before ${(before.heap / 1e6).toFixed(1)} MB, after ${(process.memoryUsage().heapUsed / 1e6).toFixed(1)} MB; handles before ${JSON.stringify(before.handles)}, after ${JSON.stringify(handles())}`);
});
