import { once } from 'node:events';
import type net from 'node:net';
import WebSocket from 'ws';
import { patchEntry } from '../../server/store/entry';
import type { Entry, ServerMessage, SnapshotMessage } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { connectWs, startTestServer, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer;
afterEach(async () => {
  await srv?.stop();
  await files?.close();
});

test('a snapshot first, then updates with increasing seq, then removed', async () => {
  files = await startFileServer();
  srv = await startTestServer();
  const f = files.addFile('/m.bin', { size: 1_000_000, throttle: 2_000_000 });
  const done = files.addFile('/done.bin', { size: 1000 });
  const first = (await srv.api('POST', '/api/downloads', { url: done.url, folder: 'vae' })).body.download as Entry;
  await waitFor(() => srv.store.getById(first.id)?.status === 'completed', 'the first download');

  const sock = await connectWs(srv.url);
  const snap = (await sock.next((m) => m.type === 'snapshot')) as SnapshotMessage;
  expect(sock.messages[0]).toBe(snap);
  expect(snap.downloads).toEqual([expect.objectContaining({ id: first.id, status: 'completed', dest: 'vae/done.bin' })]);

  const e = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download as Entry;
  await sock.next((m) => m.type === 'update' && m.download.id === e.id && m.download.status === 'completed');
  const updates = sock.messages.filter((m): m is Extract<ServerMessage, { type: 'update' }> => m.type === 'update');
  const statuses = updates.map((u) => u.download.status);
  expect(statuses).toEqual(expect.arrayContaining(['queued', 'starting', 'downloading', 'verifying', 'completed']));
  const progressing = updates.filter((u) => u.download.status === 'downloading' && u.download.downloaded > 0);
  expect(progressing.length).toBeGreaterThan(3);
  expect(progressing.some((u) => u.download.speed > 0 && u.download.eta !== null)).toBe(true);
  const seqs = sock.messages.map((m) => (m as { seq: number }).seq);
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);

  expect((await srv.api('DELETE', `/api/downloads/${first.id}`)).status).toBe(200);
  const removed = await sock.next((m) => m.type === 'removed');
  expect(removed).toMatchObject({ type: 'removed', id: first.id, dest: 'vae/done.bin' });
  expect(sock.state.has(first.id)).toBe(false);
  await sock.close();
});

test('a slow subscriber gets the latest state per download, not an unbounded backlog', async () => {
  // Every update handed to the clients at once (no rounds): the outbox alone must bound the slow one.
  srv = await startTestServer({}, { wsHighWaterMark: 16 * 1024, wsBatchMs: 0 });
  const base = (i: number): Entry => ({
    id: `id${i}`, dest: `loras/f${i}.bin`, folder: 'loras', filename: `f${i}.bin`, url: 'http://127.0.0.1:1/' + 'x'.repeat(300),
    status: 'paused', progress: 0, downloaded: 0, file_size: 1e9, speed: 0, eta: null, start_time: 1, timestamp: 1, attempts: 0,
  });
  for (let i = 0; i < 10; i++) srv.store.put(base(i));

  const slow = await connectWs(srv.url);
  const fast = await connectWs(srv.url);
  await slow.next((m) => m.type === 'snapshot');
  await fast.next((m) => m.type === 'snapshot');
  const socket = (slow.ws as unknown as { _socket: net.Socket })._socket;
  socket.pause(); // the slow reader stops reading: the kernel buffers fill, then the server's

  const rounds = 3000;
  let maxPending = 0;
  let maxBuffered = 0;
  for (let r = 1; r <= rounds; r++) {
    for (let i = 0; i < 10; i++) srv.store.put(patchEntry(srv.store.get(`loras/f${i}.bin`)!, { downloaded: r }), 'soon');
    if (r % 100 === 0) {
      for (const s of srv.hub.stats()) {
        maxPending = Math.max(maxPending, s.pending);
        maxBuffered = Math.max(maxBuffered, s.bufferedAmount);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  // Bounded by the number of downloads, and by the high-water mark plus one message.
  expect(maxPending).toBeGreaterThan(0);
  expect(maxPending).toBeLessThanOrEqual(10);
  expect(maxBuffered).toBeLessThan(16 * 1024 + 2048);

  await waitFor(() => fast.state.get('id9')?.downloaded === rounds, 'the fast client to see the end');
  socket.resume();
  await waitFor(() => [...Array(10).keys()].every((i) => slow.state.get(`id${i}`)?.downloaded === rounds), 'the slow client to catch up with the latest state');
  const slowUpdates = slow.messages.filter((m) => m.type === 'update').length;
  const fastUpdates = fast.messages.filter((m) => m.type === 'update').length;
  expect(slowUpdates).toBeLessThan(fastUpdates);
  expect(slowUpdates).toBeLessThan(rounds * 10);
  const seqs = slow.messages.map((m) => (m as { seq: number }).seq);
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
  await slow.close();
  await fast.close();
});

test('WebSocket commands are acknowledged; bad ones answered with an error message', async () => {
  files = await startFileServer();
  srv = await startTestServer();
  const f = files.addFile('/c.bin', { size: 2_000_000, throttle: 1_000_000 });
  const sock = await connectWs(srv.url);
  sock.ws.send(JSON.stringify({ type: 'start', request_id: 'r1', url: f.url, folder: 'loras' }));
  const ack = await sock.next((m) => m.type === 'ack' && m.request_id === 'r1');
  expect(ack).toMatchObject({ type: 'ack', status: 'started', download: { dest: 'loras/c.bin' } });
  const id = (ack as { download: Entry }).download.id;
  sock.ws.send(JSON.stringify({ type: 'cancel', request_id: 'r2', id }));
  expect(await sock.next((m) => m.type === 'ack' && m.request_id === 'r2')).toMatchObject({ download: { status: 'cancelled' } });
  sock.ws.send(JSON.stringify({ type: 'pause', request_id: 'r3', id }));
  expect(await sock.next((m) => m.type === 'error' && m.request_id === 'r3')).toMatchObject({ error: { code: 'INVALID_STATE' } });
  sock.ws.send(JSON.stringify({ type: 'explode', request_id: 'r4' }));
  expect(await sock.next((m) => 'request_id' in m && m.request_id === 'r4')).toMatchObject({ type: 'error', error: { code: 'UNKNOWN_COMMAND' } });
  sock.ws.send('not json');
  expect(await sock.next((m) => m.type === 'error' && m.error.code === 'INVALID_JSON')).toBeTruthy();
  sock.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  expect(await sock.next((m) => m.type === 'error' && m.error.code === 'INVALID_MESSAGE')).toBeTruthy();
  await waitFor(() => !srv.downloader.isLive('loras/c.bin'), 'the cancelled transfer to end');
  sock.ws.send(JSON.stringify({ type: 'clear_completed', request_id: 'r5' }));
  expect(await sock.next((m) => 'request_id' in m && m.request_id === 'r5')).toMatchObject({ type: 'ack', removed_count: 1 });
  // An oversized message closes that connection (1009), and the server keeps serving.
  const big = await connectWs(srv.url);
  big.ws.send('x'.repeat(70 * 1024));
  const [code] = (await once(big.ws, 'close')) as [number];
  expect(code).toBe(1009);
  expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
  await sock.close();
});

test('the heartbeat drops a peer that stops answering pings', async () => {
  srv = await startTestServer({}, { heartbeatMs: 100 });
  const ws = new WebSocket(srv.url.replace('http', 'ws') + '/ws', { autoPong: false });
  await once(ws, 'open');
  await waitFor(() => srv.hub.stats().length === 1, 'the client to be counted');
  await once(ws, 'close');
  await waitFor(() => srv.hub.stats().length === 0, 'the server to forget the dropped peer');
});
