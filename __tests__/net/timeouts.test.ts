import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createAgent, DEFAULT_TIMEOUTS, request, type Agent } from '../../server/net/raw-http';
import { rawServer, type RawServer } from '../helpers/raw-server';

// The client's own time limits: a request that hangs anywhere ends in its own retryable error
// within the limit, whoever the caller is. Short limits here; no sleeps: each case waits for the
// error, and checks how long it took.

let agent: Agent;
const closers: Array<() => void> = [];
beforeEach(() => {
  agent = createAgent({ timeouts: { connectMs: 400, tlsMs: 400, headMs: 400, bodyIdleMs: 400 } });
});
afterEach(async () => {
  await agent.close();
  for (const c of closers.splice(0)) c();
});

async function serve(answer: Parameters<typeof rawServer>[0]): Promise<RawServer> {
  const srv = await rawServer(answer);
  closers.push(() => srv.close());
  return srv;
}

/** Runs `fn`, expects it to reject, and returns the error with how long that took. */
async function failure(fn: () => Promise<unknown>): Promise<{ err: { code?: string; message: string; retryable?: boolean }; ms: number }> {
  const t0 = performance.now();
  try {
    await fn();
  } catch (err) {
    return { err: err as { code?: string; message: string }, ms: performance.now() - t0 };
  }
  throw new Error('it did not fail');
}

test('every agent has time limits, without being given any', () => {
  const plain = createAgent();
  expect(plain.timeouts).toEqual(DEFAULT_TIMEOUTS);
  expect(DEFAULT_TIMEOUTS).toEqual({ connectMs: 30_000, tlsMs: 30_000, headMs: 30_000, bodyIdleMs: 60_000 });
  return plain.close();
});

test('a server that accepts and never answers: HEAD_TIMEOUT, saying so', async () => {
  const srv = await serve(() => undefined);
  const { err, ms } = await failure(() => request(srv.url, {}, new AbortController().signal, { agent }));
  expect(err).toMatchObject({ code: 'HEAD_TIMEOUT', retryable: true });
  expect(err.message).toBe(`${srv.url.host} accepted the connection but sent no answer for 0.4 s`);
  expect(ms).toBeGreaterThanOrEqual(380);
  expect(ms).toBeLessThan(2000);
});

test('a server that sends half a head and stops: HEAD_TIMEOUT, saying so', async () => {
  const srv = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Len'));
  const { err, ms } = await failure(() => request(srv.url, {}, new AbortController().signal, { agent }));
  expect(err).toMatchObject({ code: 'HEAD_TIMEOUT', retryable: true });
  expect(err.message).toBe(`${srv.url.host} sent part of its answer's head, then nothing more for 0.4 s`);
  expect(ms).toBeLessThan(2000);
});

test('a request may set its own limits over the agent\'s', async () => {
  const srv = await serve(() => undefined);
  const { err, ms } = await failure(() => request(srv.url, {}, new AbortController().signal, { agent, timeouts: { headMs: 150 } }));
  expect(err).toMatchObject({ code: 'HEAD_TIMEOUT' });
  expect(ms).toBeLessThan(380);
});

test.each(['pump', 'stream'] as const)('a server that stops mid-body: BODY_TIMEOUT (%s), with what arrived kept', async (how) => {
  const srv = await serve((socket) => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(5000)}`));
  const res = await request(srv.url, {}, new AbortController().signal, { agent });
  const t0 = performance.now();
  if (how === 'pump') {
    const file = await fs.open(path.join(os.tmpdir(), `md-timeout-${process.pid}.bin`), 'w');
    try {
      const pump = res.body.pump({ file, position: 0 });
      await expect(pump.done).rejects.toMatchObject({ code: 'BODY_TIMEOUT', retryable: true, message: `${srv.url.host} sent no data for 0.4 s in the middle of the body` });
      expect(pump.written).toBe(5000);
    } finally {
      await file.close();
      await fs.rm(path.join(os.tmpdir(), `md-timeout-${process.pid}.bin`), { force: true });
    }
  } else {
    let got = 0;
    await expect(
      (async () => {
        for await (const c of res.body) got += (c as Buffer).length;
      })(),
    ).rejects.toMatchObject({ code: 'BODY_TIMEOUT' });
    expect(got).toBe(5000);
  }
  expect(performance.now() - t0).toBeLessThan(2000);
});

test('a body held back by a slow disk is not the server\'s silence: no BODY_TIMEOUT', async () => {
  const size = 12 * 1024 * 1024;
  const srv = await serve((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
    socket.end(Buffer.alloc(size, 7));
  });
  const slow = {
    async writev(buffers: Buffer[]) {
      // The fault itself, not a wait: a disk whose every write takes 250 ms, longer than the 200 ms
      // body-idle limit, while the socket waits paused.
      await new Promise((r) => setTimeout(r, 250));
      return { bytesWritten: buffers.reduce((n, b) => n + b.length, 0), buffers };
    },
  } as unknown as FileHandle;
  const res = await request(srv.url, {}, new AbortController().signal, { agent, timeouts: { bodyIdleMs: 200 } });
  const pump = res.body.pump({ file: slow, position: 0 });
  await expect(pump.done).resolves.toBe('end');
  expect(pump.written).toBe(size);
});

test('a server that accepts TCP but never does TLS: TLS_TIMEOUT', async () => {
  const server = net.createServer(() => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sockets: net.Socket[] = [];
  server.on('connection', (s) => sockets.push(s));
  closers.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const url = new URL(`https://127.0.0.1:${(server.address() as net.AddressInfo).port}/f`);
  const { err, ms } = await failure(() => request(url, {}, new AbortController().signal, { agent }));
  expect(err).toMatchObject({ code: 'TLS_TIMEOUT', retryable: true, message: `${url.host} accepted the connection but did not finish the TLS handshake in 0.4 s` });
  expect(ms).toBeLessThan(2000);
});

/**
 * A host whose SYNs go unanswered: a child process listens with a backlog of 1 and never accepts
 * (its event loop is blocked), and two connections fill its queue; the kernel then drops new SYNs.
 */
async function blackHole(): Promise<{ port: number; child: ChildProcess; fillers: net.Socket[] }> {
  const child = spawn(process.execPath, [
    '-e',
    // stdout to a pipe is written synchronously on Linux: once the line is read, the loop is blocked.
    `const s = require('node:net').createServer(); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => { console.log(s.address().port + ' blocking'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); });`,
  ]);
  let out = '';
  const port = await new Promise<number>((resolve) =>
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      const m = /^(\d+) blocking\n/.exec(out);
      if (m) resolve(Number(m[1]));
    }),
  );
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    fillers.push(s);
  }
  // Until a connection hangs: the queue is full.
  for (;;) {
    const probe = net.connect(port, '127.0.0.1');
    probe.on('error', () => undefined);
    // A deadline on the connect event, not a sleep: no connect within 300 ms means the queue is full.
    const hung = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(true), 300);
      probe.once('connect', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    fillers.push(probe);
    if (hung) break;
  }
  return { port, child, fillers };
}

test('a host that never completes the TCP handshake: CONNECT_TIMEOUT', async () => {
  const hole = await blackHole();
  closers.push(() => {
    for (const s of hole.fillers) s.destroy();
    hole.child.kill('SIGKILL');
  });
  const url = new URL(`http://127.0.0.1:${hole.port}/f`);
  const { err, ms } = await failure(() => request(url, {}, new AbortController().signal, { agent }));
  expect(err).toMatchObject({ code: 'CONNECT_TIMEOUT', retryable: true, message: `could not connect to ${url.host} in 0.4 s` });
  expect(ms).toBeLessThan(2000);
});

test('a time limit on a reused connection is no stale connection to retry silently', async () => {
  let n = 0;
  const srv = await serve((socket) => {
    if (n++ === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    // the second request on the kept connection is never answered
  });
  const first = await request(srv.url, {}, new AbortController().signal, { agent });
  for await (const _ of first.body) void _;
  const { err } = await failure(() => request(srv.url, {}, new AbortController().signal, { agent }));
  expect(err).toMatchObject({ code: 'HEAD_TIMEOUT' });
  expect(srv.connections()).toBe(1);
});

test("the server's Keep-Alive timeout is honoured: an idle connection is closed a second before it", async () => {
  const closedAfter: number[] = [];
  let answeredAt = 0;
  const srv = await serve((socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=2, max=100\r\n\r\nok', () => (answeredAt = performance.now()));
    socket.once('close', () => closedAfter.push(performance.now() - answeredAt));
  });
  const res = await request(srv.url, {}, new AbortController().signal, { agent: (agent = await swapAgent({ idleMs: 10_000 })) });
  for await (const _ of res.body) void _;
  await waitFor(() => closedAfter.length === 1, 5000);
  expect(closedAfter[0]).toBeGreaterThan(800);
  expect(closedAfter[0]).toBeLessThan(1800);
  // timeout=1 leaves no time to reuse it: closed at once, and the next request has a new connection.
  const srv1 = await serve((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=1\r\n\r\nok'));
  for (let i = 0; i < 2; i++) {
    const r = await request(srv1.url, {}, new AbortController().signal, { agent });
    for await (const _ of r.body) void _;
  }
  expect(srv1.connections()).toBe(2);
});

async function swapAgent(options: Parameters<typeof createAgent>[0]): Promise<Agent> {
  await agent.close();
  return createAgent(options);
}

async function waitFor(condition: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`not so after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a proxy that accepts CONNECT and never answers: HEAD_TIMEOUT naming the proxy; one that answers no HTTP: BAD_RESPONSE', async () => {
  const { loadProxyConfig } = await import('../../server/config');
  for (const [answer, code] of [
    [() => undefined, 'HEAD_TIMEOUT'],
    [(s: net.Socket) => s.write('HTTP/1.1 200 Connection established\nProxy: x\n\n'), 'BAD_RESPONSE'],
  ] as const) {
    const fake = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => answer(s));
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const port = (fake.address() as net.AddressInfo).port;
    const sockets: net.Socket[] = [];
    fake.on('connection', (s) => sockets.push(s));
    closers.push(() => {
      for (const s of sockets) s.destroy();
      fake.close();
    });
    const through = createAgent({ timeouts: { headMs: 300 }, proxy: loadProxyConfig({ HTTPS_PROXY: `http://u:secret-pw@127.0.0.1:${port}` }) });
    const { err, ms } = await failure(() => request(new URL('https://example.invalid/f'), {}, new AbortController().signal, { agent: through }));
    await through.close();
    expect(err).toMatchObject({ code });
    if (code === 'HEAD_TIMEOUT') expect(err.message).toBe(`the proxy at 127.0.0.1:${port} accepted the connection but did not answer CONNECT example.invalid:443 for 0.3 s`);
    expect(err.message).not.toContain('secret-pw');
    expect(ms).toBeLessThan(2000);
  }
});
