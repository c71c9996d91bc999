/**
 * The typed WebSocket client (client/ws-client.ts) as a Node bot uses it: with the `ws` package
 * against the real server, and with a scripted socket for seq handling, backoff and polling.
 * No browser needed: this file runs in `npm test`.
 */
import fs from 'node:fs/promises';
import WebSocket from 'ws';
import { LiveClient, type ConnectionState, type WebSocketLike } from '../../client/ws-client';
import type { ServerMessage } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { testEntry } from '../helpers/entries';
import { startTestServer, waitFor, type TestServer } from '../helpers/harness';

const entry = testEntry;

/** A socket the test drives by hand. */
class ScriptedSocket implements WebSocketLike {
  static all: ScriptedSocket[] = [];
  readyState = 0;
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  sent: string[] = [];
  constructor(readonly url: string) {
    ScriptedSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(data);
  }
  close(): void {
    this.readyState = 3;
  }
  deliver(m: ServerMessage): void {
    this.readyState = 1;
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  fail(): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: '' });
  }
}

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  jest.useRealTimers();
  jest.restoreAllMocks();
  ScriptedSocket.all = [];
  for (const c of cleanups.splice(0).reverse()) await c();
});

function states(client: LiveClient): ConnectionState[] {
  const seen: ConnectionState[] = [];
  client.on('state', (info) => seen.push(info.state));
  return seen;
}

describe('applying messages', () => {
  test('a snapshot replaces everything; updates and removals apply only with a greater seq', () => {
    const client = new LiveClient({ url: 'ws://x/ws', WebSocket: ScriptedSocket });
    const changes: Array<{ ids: string[]; reset: boolean }> = [];
    client.on('change', (c) => changes.push({ ids: [...c.ids].sort(), reset: c.reset }));

    expect(client.apply({ type: 'snapshot', seq: 10, downloads: [entry('a'), entry('b')] })).toBe(true);
    expect(client.apply({ type: 'update', seq: 10, download: entry('a', { downloaded: 50 }) })).toBe(false); // not newer
    expect(client.apply({ type: 'update', seq: 11, download: entry('a', { downloaded: 60 }) })).toBe(true);
    expect(client.apply({ type: 'update', seq: 9, download: entry('a', { downloaded: 5 }) })).toBe(false); // stale
    expect(client.apply({ type: 'removed', seq: 11, id: 'b', dest: 'loras/b.safetensors' })).toBe(false);
    expect(client.apply({ type: 'removed', seq: 12, id: 'b', dest: 'loras/b.safetensors' })).toBe(true);
    expect(client.downloads.get('a')?.downloaded).toBe(60);
    expect([...client.downloads.keys()]).toEqual(['a']);
    expect(client.seq).toBe(12);

    // A restarted server counts from a lower seq: its snapshot still replaces the state.
    expect(client.apply({ type: 'snapshot', seq: 3, downloads: [entry('c')] })).toBe(true);
    expect([...client.downloads.keys()]).toEqual(['c']);
    expect(client.seq).toBe(3);
    expect(client.apply({ type: 'update', seq: 4, download: entry('c', { status: 'completed' }) })).toBe(true);
    expect(changes).toEqual([
      { ids: ['a', 'b'], reset: true },
      { ids: ['a'], reset: false },
      { ids: ['b'], reset: false },
      { ids: ['a', 'c'], reset: true },
      { ids: ['c'], reset: false },
    ]);
  });
});

describe('reconnecting', () => {
  test('backs off from 0.5 s doubling to 10 s, says offline after 4 failures, and is live again with a new snapshot', () => {
    jest.useFakeTimers();
    jest.spyOn(Math, 'random').mockReturnValue(1); // no jitter
    const client = new LiveClient({ url: 'ws://x/ws', WebSocket: ScriptedSocket }).start();
    const seen = states(client);
    ScriptedSocket.all[0]!.deliver({ type: 'snapshot', seq: 1, downloads: [entry('a')] });
    expect(client.connection.state).toBe('live');

    ScriptedSocket.all[0]!.fail(); // the connection drops
    const delays: number[] = [];
    for (let i = 1; i <= 6; i++) {
      delays.push(client.connection.retryInMs!);
      jest.advanceTimersByTime(client.connection.retryInMs! - 1);
      expect(ScriptedSocket.all).toHaveLength(i); // not before its time
      jest.advanceTimersByTime(1);
      expect(ScriptedSocket.all).toHaveLength(i + 1);
      if (i < 6) ScriptedSocket.all[i]!.fail();
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 10_000]);
    expect(seen).toContain('offline');
    expect(client.downloads.get('a')).toBeDefined(); // the last known state stays while away

    ScriptedSocket.all[6]!.deliver({ type: 'snapshot', seq: 1, downloads: [entry('b')] });
    expect(client.connection).toEqual({ state: 'live', failures: 0 });
    expect([...client.downloads.keys()]).toEqual(['b']);
    client.close();
    expect(client.connection.state).toBe('closed');
    jest.advanceTimersByTime(60_000);
    expect(ScriptedSocket.all).toHaveLength(7); // closed means no more attempts
  });

  test('polls GET /status every 2 s when the WebSocket cannot open but HTTP answers', async () => {
    jest.useFakeTimers();
    let polls = 0;
    const client = new LiveClient({
      url: 'ws://x/ws',
      WebSocket: ScriptedSocket,
      probe: async () => ({ ok: true, downloads: [entry('p', { downloaded: ++polls * 10 })] }),
    }).start();
    ScriptedSocket.all[0]!.fail();
    await jest.advanceTimersByTimeAsync(0);
    expect(client.connection.state).toBe('polling');
    expect(client.downloads.get('p')?.downloaded).toBe(10);
    await jest.advanceTimersByTimeAsync(2000);
    expect(client.downloads.get('p')?.downloaded).toBe(20);
    // The WebSocket keeps being tried; once it gets through, polling stops.
    await jest.advanceTimersByTimeAsync(client.connection.retryInMs ?? 0);
    ScriptedSocket.all.at(-1)!.deliver({ type: 'snapshot', seq: 7, downloads: [] });
    expect(client.connection.state).toBe('live');
    const before = polls;
    await jest.advanceTimersByTimeAsync(10_000);
    expect(polls).toBe(before);
    client.close();
  });

  test('stops and reports unauthorized when the server wants a token, until reconnectNow()', async () => {
    jest.useFakeTimers();
    let token = '';
    const client = new LiveClient({
      url: () => `ws://x/ws?token=${token}`,
      WebSocket: ScriptedSocket,
      probe: async () => ({ ok: false, unauthorized: true }),
    }).start();
    ScriptedSocket.all[0]!.fail();
    await jest.advanceTimersByTimeAsync(0);
    expect(client.connection.state).toBe('unauthorized');
    await jest.advanceTimersByTimeAsync(60_000);
    expect(ScriptedSocket.all).toHaveLength(1);
    token = 'sesame';
    client.reconnectNow();
    expect(ScriptedSocket.all[1]!.url).toBe('ws://x/ws?token=sesame');
    client.close();
  });
});

describe('against the real server with the ws package', () => {
  let files: FileServer;
  beforeEach(async () => {
    files = await startFileServer();
    files.addFile('/bot.safetensors', { size: 2 * 1024 * 1024, throttle: 4 * 1024 * 1024 });
    cleanups.push(() => files.close());
  });

  test('follows a download to completion, sends commands, and comes back after a server restart', async () => {
    const first = await startTestServer({ CONNECTIONS: '1' });
    const { dir, port } = first;
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    cleanups.push(() => first.stop());
    const client = new LiveClient({ url: `ws://127.0.0.1:${port}/ws`, WebSocket, minBackoffMs: 50 }).start();
    cleanups.push(() => client.close());
    const seen = states(client);
    await waitFor(() => client.connection.state === 'live', 'live');

    const ack = await client.send({ type: 'start', url: `${files.url}/bot.safetensors`, folder: 'loras' });
    expect(ack).toMatchObject({ type: 'ack', status: 'started', download: { dest: 'loras/bot.safetensors' } });
    const id = ack.download!.id;
    await waitFor(() => (client.downloads.get(id)?.downloaded ?? 0) > 0, 'progress');
    await expect(client.send({ type: 'resume', id })).rejects.toMatchObject({ code: 'INVALID_STATE' });

    await first.stop({ keepDir: true });
    await waitFor(() => client.connection.state === 'reconnecting', 'reconnecting');
    const second = await startTestServer({ CONNECTIONS: '1', PORT: String(port) }, { dir });
    cleanups.push(() => second.stop());
    await waitFor(() => client.connection.state === 'live', 'live again', 10_000);
    await waitFor(() => client.downloads.get(id)?.status === 'completed', 'completed', 15_000);
    expect(seen).toEqual(expect.arrayContaining(['live', 'reconnecting']));
    expect(seen.at(-1)).toBe('live');
  });
});
