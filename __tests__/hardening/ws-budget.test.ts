/**
 * What a WebSocket client can cost the server is bounded, whatever the client does: a reader that
 * stopped reading while sending commands is dropped at its byte budget, pongs nobody asked for do
 * not keep a silent peer alive, a large snapshot is streamed within the high-water mark instead of
 * being queued whole, and an error never echoes the input back.
 */
import { once } from 'node:events';
import type net from 'node:net';
import WebSocket from 'ws';
import type { Entry, SnapshotMessage } from '../../server/protocol/wire';
import { connectWs, startTestServer, waitFor, type TestServer } from '../helpers/harness';

let srv: TestServer;
afterEach(async () => {
  await srv?.stop();
});

const socketOf = (ws: WebSocket): net.Socket => (ws as unknown as { _socket: net.Socket })._socket;

test('a client that sends commands but never reads is dropped at its byte budget', async () => {
  const budget = 256 * 1024;
  srv = await startTestServer({}, { wsHighWaterMark: 16 * 1024, wsMaxQueuedBytes: budget });
  const sock = await connectWs(srv.url);
  await sock.next((m) => m.type === 'snapshot');
  socketOf(sock.ws).pause(); // reads nothing from now on: every reply stays in the server or the kernel
  const closed = once(sock.ws, 'close');
  let maxQueued = 0;
  let sent = 0;
  while (srv.hub.stats().length > 0 && sent < 300_000) {
    for (let i = 0; i < 500; i++, sent++) sock.ws.send(JSON.stringify({ type: 'explode', request_id: `r${sent}`.padEnd(150, 'x') }));
    await new Promise((resolve) => setImmediate(resolve));
    for (const s of srv.hub.stats()) maxQueued = Math.max(maxQueued, s.queuedBytes);
  }
  await waitFor(() => srv.hub.stats().length === 0, 'the server to drop the client that never reads');
  // Never more than the budget plus the one reply that crossed it.
  expect(maxQueued).toBeLessThanOrEqual(budget + 1024);
  expect(srv.log.lines.some((l) => l.includes('WebSocket client dropped'))).toBe(true);
  socketOf(sock.ws).resume();
  await closed;
  expect((await srv.api('GET', '/healthz')).body).toEqual({ ok: true });
});

test('pongs nobody asked for do not keep a peer alive: only an answer to our own ping does', async () => {
  srv = await startTestServer({}, { heartbeatMs: 100 });
  const ws = new WebSocket(srv.url.replace('http', 'ws') + '/ws', { autoPong: false });
  await once(ws, 'open');
  const pongs = setInterval(() => ws.pong(Buffer.from('alive')), 20);
  try {
    await waitFor(() => srv.hub.stats().length === 1, 'the client to be counted');
    await once(ws, 'close');
    await waitFor(() => srv.hub.stats().length === 0, 'the server to forget the peer');
  } finally {
    clearInterval(pongs);
  }
  // A peer that does answer stays connected across several heartbeats.
  const good = await connectWs(srv.url);
  const pings = { n: 0 };
  good.ws.on('ping', () => pings.n++);
  await waitFor(() => pings.n >= 4, 'four pings answered');
  expect(good.ws.readyState).toBe(WebSocket.OPEN);
  await good.close();
});

test('a large snapshot is streamed within the high-water mark, and arrives whole', async () => {
  const hwm = 64 * 1024;
  srv = await startTestServer({}, { wsHighWaterMark: hwm });
  const n = 30_000;
  for (let i = 0; i < n; i++) {
    srv.store.put(
      { id: `s${i}`, dest: `loras/f${i}.bin`, folder: 'loras', filename: `f${i}.bin`, url: `http://127.0.0.1:1/${'y'.repeat(600)}/${i}`,
        status: 'completed', progress: 100, downloaded: 1, file_size: 1, speed: 0, eta: null, start_time: 1, timestamp: 1, attempts: 0 } satisfies Entry,
      'soon',
    );
  }
  // Connected but not reading: the ~20 MB snapshot must not pile up in the server for this client.
  const ws = new WebSocket(srv.url.replace('http', 'ws') + '/ws');
  const chunks: Buffer[] = [];
  ws.on('message', (data) => chunks.push(data as Buffer));
  await once(ws, 'open');
  socketOf(ws).pause();
  // Once the kernel's buffers are full, the rest of the snapshot waits unserialized.
  const blocked = await waitFor(() => srv.hub.stats().find((s) => s.blocked), 'the socket to fill up', 20_000);
  expect(blocked.bufferedAmount).toBeLessThan(hwm + 2 * 64 * 1024);
  socketOf(ws).resume();
  await waitFor(() => chunks.length > 0, 'the snapshot to arrive', 20_000);
  const snap = JSON.parse(chunks[0]!.toString()) as SnapshotMessage;
  expect(snap.type).toBe('snapshot');
  expect(snap.downloads).toHaveLength(n);
  expect(snap.downloads[n - 1]).toMatchObject({ id: `s${n - 1}`, dest: `loras/f${n - 1}.bin` });
  ws.close();
});

test('an unknown command is answered without echoing it back', async () => {
  srv = await startTestServer();
  const sock = await connectWs(srv.url);
  sock.ws.send(JSON.stringify({ type: 'z'.repeat(60_000), request_id: 'big' }));
  const reply = await sock.next((m) => m.type === 'error' && m.request_id === 'big');
  expect(reply).toMatchObject({ error: { code: 'UNKNOWN_COMMAND' } });
  expect(JSON.stringify(reply).length).toBeLessThan(400);
  await sock.close();
});
