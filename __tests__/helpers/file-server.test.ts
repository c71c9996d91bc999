/**
 * Tests for the test file server itself: the download manager's tests trust its Range, If-Range,
 * fault and throttle behaviour, so each of those is pinned here against a plain node:http client
 * (a fresh connection per request, agent: false, so throttling and resets are per test request).
 */
import * as http from 'node:http';
import { createHash } from 'node:crypto';
import { startFileServer, parseRange, type FileServer } from './file-server';

interface Collected {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The message arrived whole (false after a reset / premature close). */
  complete: boolean;
  error?: Error;
}

/** One request; resolves when the response closes, whether it completed or was cut. */
function get(url: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Collected> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let error: Error | undefined;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => {
        error = err;
      });
      res.on('close', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete, error }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Starts a request and exposes its progress, for responses that are expected not to end on their own. */
function open(url: string): {
  received: () => number;
  ended: () => boolean;
  closed: Promise<{ complete: boolean; bytes: number }>;
  waitReceived: (n: number, timeoutMs?: number) => Promise<void>;
} {
  let bytes = 0;
  let ended = false;
  const listeners = new Set<() => void>();
  const closed = new Promise<{ complete: boolean; bytes: number }>((resolve, reject) => {
    const req = http.request(url, { agent: false }, (res) => {
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        for (const l of [...listeners]) l();
      });
      res.on('end', () => {
        ended = true;
      });
      res.on('error', () => undefined); // an abort is the expected outcome; 'close' reports it
      res.on('close', () => resolve({ complete: res.complete, bytes }));
    });
    req.on('error', reject);
    req.end();
  });
  const waitReceived = (n: number, timeoutMs = 3000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (bytes >= n) {
          clearTimeout(timer);
          listeners.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`client received ${bytes} of ${n} bytes within ${timeoutMs} ms`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  return { received: () => bytes, ended: () => ended, closed, waitReceived };
}

/** Rejects if `p` has not settled within `ms`: a deadline, not a sleep. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let srv: FileServer;
beforeEach(async () => {
  srv = await startFileServer();
});
afterEach(async () => {
  await srv.close();
});

describe('plain serving', () => {
  test('full GET returns the exact bytes, sha256 and validators', async () => {
    const f = srv.addFile('/a.bin', { size: 300_001 });
    expect(f.size).toBe(300_001);
    expect(f.sha256).toBe(sha256(f.data));
    expect(f.url).toBe(`${srv.url}/a.bin`);
    expect(srv.url).toBe(`http://127.0.0.1:${srv.port}`);

    const r = await get(f.url);
    expect(r.status).toBe(200);
    expect(r.complete).toBe(true);
    expect(sha256(r.body)).toBe(f.sha256);
    expect(r.headers['content-length']).toBe('300001');
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(r.headers['etag']).toBe(`"${f.sha256.slice(0, 16)}"`);
    expect(r.headers['last-modified']).toMatch(/GMT$/);
    expect(r.headers['content-type']).toBe('application/octet-stream');
  });

  test('content is deterministic per path and differs between paths', async () => {
    const a = srv.addFile('/x.bin', { size: 1000 });
    const b = srv.addFile('/y.bin', { size: 1000 });
    const other = await startFileServer();
    try {
      expect(other.addFile('/x.bin', { size: 1000 }).sha256).toBe(a.sha256);
    } finally {
      await other.close();
    }
    expect(b.sha256).not.toBe(a.sha256);
  });

  test('64 MiB is generated and hashed quickly', () => {
    const t0 = Date.now();
    const f = srv.addFile('/big.bin', { size: 64 * 1024 * 1024 });
    const ms = Date.now() - t0;
    expect(f.size).toBe(64 * 1024 * 1024);
    expect(ms).toBeLessThan(3000); // ~0.3 s here; loose so a slow CI box does not flake
  });

  test('HEAD gives headers only; unknown path is 404; custom headers and data are served', async () => {
    const data = Buffer.from('hello world');
    srv.addFile('/h.txt', {
      data,
      contentType: 'text/plain',
      contentDisposition: 'attachment; filename="h.txt"',
      headers: { 'X-Linked-Size': '11' },
      etag: false,
      lastModified: false,
    });
    const head = await get(`${srv.url}/h.txt`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(head.headers['content-length']).toBe('11');
    expect(head.headers['content-disposition']).toBe('attachment; filename="h.txt"');
    expect(head.headers['x-linked-size']).toBe('11');
    expect(head.headers['etag']).toBeUndefined();
    expect(head.headers['last-modified']).toBeUndefined();
    expect((await get(`${srv.url}/h.txt`)).body.toString()).toBe('hello world');
    expect((await get(`${srv.url}/nope`)).status).toBe(404);
  });
});

describe('ranges', () => {
  test('bytes=N- gives 206 and the tail slice', async () => {
    const f = srv.addFile('/r.bin', { size: 10_000 });
    const r = await get(f.url, { headers: { Range: 'bytes=1234-' } });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 1234-9999/10000');
    expect(r.headers['content-length']).toBe(String(10_000 - 1234));
    expect(r.body.equals(f.data.subarray(1234))).toBe(true);
  });

  test('bytes=N-M (clamped) and suffix bytes=-K', async () => {
    const f = srv.addFile('/r.bin', { size: 10_000 });
    const mid = await get(f.url, { headers: { Range: 'bytes=10-19' } });
    expect(mid.status).toBe(206);
    expect(mid.headers['content-range']).toBe('bytes 10-19/10000');
    expect(mid.body.equals(f.data.subarray(10, 20))).toBe(true);

    const clamped = await get(f.url, { headers: { Range: 'bytes=9990-20000' } });
    expect(clamped.headers['content-range']).toBe('bytes 9990-9999/10000');
    expect(clamped.body.length).toBe(10);

    const suffix = await get(f.url, { headers: { Range: 'bytes=-100' } });
    expect(suffix.status).toBe(206);
    expect(suffix.headers['content-range']).toBe('bytes 9900-9999/10000');
    expect(suffix.body.equals(f.data.subarray(9900))).toBe(true);

    // Multi-range: documented as "first range only, single part".
    const multi = await get(f.url, { headers: { Range: 'bytes=0-4,100-104' } });
    expect(multi.status).toBe(206);
    expect(multi.headers['content-range']).toBe('bytes 0-4/10000');
  });

  test('start past the end is 416 with Content-Range */TOTAL', async () => {
    const f = srv.addFile('/r.bin', { size: 10_000 });
    const r = await get(f.url, { headers: { Range: 'bytes=10000-' } });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe('bytes */10000');
  });

  test('parseRange edge cases', () => {
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=-50', 10)).toEqual({ start: 0, end: 10 });
    expect(parseRange('bytes=5-3', 10)).toBeUndefined();
    expect(parseRange('items=0-1', 10)).toBeUndefined();
  });

  test('If-Range: matching ETag or Last-Modified honours Range; a mismatch gives 200 full', async () => {
    const f = srv.addFile('/r.bin', { size: 5000 });
    const first = await get(f.url);
    const etag = String(first.headers['etag']);
    const lm = String(first.headers['last-modified']);

    const ok = await get(f.url, { headers: { Range: 'bytes=100-', 'If-Range': etag } });
    expect(ok.status).toBe(206);
    const okDate = await get(f.url, { headers: { Range: 'bytes=100-', 'If-Range': lm } });
    expect(okDate.status).toBe(206);

    const stale = await get(f.url, { headers: { Range: 'bytes=100-', 'If-Range': '"0000000000000000"' } });
    expect(stale.status).toBe(200);
    expect(stale.body.equals(f.data)).toBe(true);
    const weak = await get(f.url, { headers: { Range: 'bytes=100-', 'If-Range': `W/${etag}` } });
    expect(weak.status).toBe(200);
  });

  test('setFileOptions changing content changes ETag and Last-Modified, so an old If-Range gets 200', async () => {
    const f = srv.addFile('/r.bin', { size: 5000 });
    const before = await get(f.url, { method: 'HEAD' });
    const changed = srv.setFileOptions('/r.bin', { size: 5000 });
    expect(changed.sha256).not.toBe(f.sha256);
    for (const validator of [String(before.headers['etag']), String(before.headers['last-modified'])]) {
      const r = await get(f.url, { headers: { Range: 'bytes=100-', 'If-Range': validator } });
      expect(r.status).toBe(200);
      expect(sha256(r.body)).toBe(changed.sha256);
    }
  });

  test('ignoreRange answers 200 full; acceptRanges:false does not advertise ranges', async () => {
    const f = srv.addFile('/i.bin', { size: 4096, ignoreRange: true });
    const r = await get(f.url, { headers: { Range: 'bytes=100-' } });
    expect(r.status).toBe(200);
    expect(r.body.equals(f.data)).toBe(true);

    const g = srv.addFile('/n.bin', { size: 4096, acceptRanges: false });
    const n = await get(g.url, { headers: { Range: 'bytes=100-' } });
    expect(n.status).toBe(200);
    expect(n.headers['accept-ranges']).toBeUndefined();
  });

  test('noContentLength: chunked, no Content-Length, Range ignored', async () => {
    const f = srv.addFile('/c.bin', { size: 200_000, noContentLength: true });
    const r = await get(f.url, { headers: { Range: 'bytes=100-' } });
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBeUndefined();
    expect(r.headers['transfer-encoding']).toBe('chunked');
    expect(r.headers['accept-ranges']).toBeUndefined();
    expect(r.body.equals(f.data)).toBe(true);
  });
});

describe('faults', () => {
  test('are consumed in order: 503, then 429 with Retry-After, then success', async () => {
    const f = srv.addFile('/f.bin', { size: 1000 });
    srv.fault('/f.bin', { status: 503 }, { status: 429, retryAfter: '2', body: 'slow down' });
    const a = await get(f.url);
    const b = await get(f.url);
    const c = await get(f.url);
    expect(a.status).toBe(503);
    expect(b.status).toBe(429);
    expect(b.headers['retry-after']).toBe('2');
    expect(b.body.toString()).toBe('slow down');
    expect(c.status).toBe(200);
    expect(c.body.equals(f.data)).toBe(true);
    expect(srv.requests.map((r) => r.status)).toEqual([503, 429, 200]);
  });

  test('resetAfter: the client gets exactly that many bytes, then an error', async () => {
    const f = srv.addFile('/f.bin', { size: 500_000 });
    srv.fault('/f.bin', { resetAfter: 100_000 });
    const r = await get(f.url);
    expect(r.status).toBe(200);
    expect(r.complete).toBe(false);
    expect(r.error).toBeDefined();
    expect(r.body.length).toBe(100_000);
    expect(r.body.equals(f.data.subarray(0, 100_000))).toBe(true);
    const rec = await srv.waitForRequest((x) => x.path === '/f.bin');
    expect(rec.bytesSent).toBe(100_000);
    expect(rec.finished).toBe(false);
    // Consumed: the next request succeeds.
    expect((await get(f.url)).body.length).toBe(500_000);
  });

  test('resetAfter within a Range response counts from the range start', async () => {
    const f = srv.addFile('/f.bin', { size: 10_000 });
    srv.fault('/f.bin', { resetAfter: 10 });
    const r = await get(f.url, { headers: { Range: 'bytes=5000-' } });
    expect(r.status).toBe(206);
    expect(r.body.equals(f.data.subarray(5000, 5010))).toBe(true);
    expect(r.complete).toBe(false);
  });

  test('stallAfter: bytes arrive, then nothing until releaseStalls()', async () => {
    const f = srv.addFile('/s.bin', { size: 1_000_000 });
    srv.addFile('/other', { size: 10 });
    srv.fault('/s.bin', { stallAfter: 65_536 });
    const c = open(f.url);
    await srv.waitForBytes('/s.bin', 65_536);
    await c.waitReceived(65_536);
    // A full round trip on another connection proves the server loop moved on with nothing more for us.
    expect((await get(`${srv.url}/other`)).status).toBe(200);
    expect(c.received()).toBe(65_536);
    expect(c.ended()).toBe(false);

    srv.releaseStalls();
    const done = await within(c.closed, 3000, 'stalled response after releaseStalls');
    expect(done.complete).toBe(false);
    expect(done.bytes).toBe(65_536);
  });

  test('close() resolves while a stalled response is open, and is idempotent', async () => {
    const f = srv.addFile('/s.bin', { size: 100_000 });
    srv.fault('/s.bin', { stallAfter: 1000 });
    const c = open(f.url);
    await c.waitReceived(1000);
    await within(srv.close(), 3000, 'close() with a stalled response');
    await srv.close();
    const done = await within(c.closed, 3000, 'client after close()');
    expect(done.complete).toBe(false);
  });

  test('redirectTo answers 302 with Location', async () => {
    const f = srv.addFile('/target.bin', { size: 10 });
    srv.fault('/moved', { redirectTo: f.url });
    const r = await get(`${srv.url}/moved`);
    expect(r.status).toBe(302);
    expect(r.headers['location']).toBe(f.url);
    // fetch follows it to the file.
    srv.fault('/moved', { redirectTo: f.url });
    const followed = await fetch(`${srv.url}/moved`);
    expect(Buffer.from(await followed.arrayBuffer()).equals(f.data)).toBe(true);
  });

  test('contentLengthDelta: negative sends a short but complete body, positive truncates', async () => {
    const f = srv.addFile('/d.bin', { size: 1000 });
    srv.fault('/d.bin', { contentLengthDelta: -10 }, { contentLengthDelta: 10 });
    const short = await get(f.url);
    expect(short.headers['content-length']).toBe('990');
    expect(short.complete).toBe(true);
    expect(short.body.equals(f.data.subarray(0, 990))).toBe(true);
    const long = await get(f.url);
    expect(long.headers['content-length']).toBe('1010');
    expect(long.complete).toBe(false);
    expect(long.body.equals(f.data)).toBe(true);
  });
});

describe('faults added for the network-fault suite', () => {
  test('when: a fault waits for a request it matches; others pass it by; clearFaults drops the rest', async () => {
    const f = srv.addFile('/w.bin', { size: 1000 });
    srv.fault('/w.bin', { status: 503, when: (r) => r.range !== 'bytes=0-0' }, { status: 502 });
    const probe = await get(f.url, { headers: { Range: 'bytes=0-0' } });
    expect(probe.status).toBe(502); // the 503 is not for a probe: the next fault is taken
    expect((await get(f.url)).status).toBe(503);
    srv.fault('/w.bin', { status: 500 }, { status: 500 });
    srv.clearFaults('/w.bin');
    expect((await get(f.url)).status).toBe(200);
    expect(srv.requests.map((r) => r.fault?.status)).toEqual([502, 503, undefined]);
  });

  test('ignoreRange once: the whole body with 200, the next Range request is honoured', async () => {
    const f = srv.addFile('/i1.bin', { size: 5000 });
    srv.fault('/i1.bin', { ignoreRange: true });
    const whole = await get(f.url, { headers: { Range: 'bytes=100-' } });
    expect(whole.status).toBe(200);
    expect(whole.body.equals(f.data)).toBe(true);
    const ranged = await get(f.url, { headers: { Range: 'bytes=100-' } });
    expect(ranged.status).toBe(206);
    expect(ranged.body.equals(f.data.subarray(100))).toBe(true);
  });

  test('drip: the first pieces come one by one, then the rest, and the body is whole', async () => {
    const f = srv.addFile('/d.bin', { size: 100_000 });
    srv.fault('/d.bin', { drip: { bytes: 100, everyMs: 60, times: 4 } });
    const c = open(f.url);
    await c.waitReceived(100);
    expect(c.received()).toBeLessThan(400); // not all at once
    const done = await c.closed;
    expect(done).toEqual({ complete: true, bytes: 100_000 });
    const rec = srv.requests[0]!;
    expect(rec.endedAt! - rec.startedAt).toBeGreaterThanOrEqual(200); // four gaps of 60 ms, loosely
    expect(rec.bytesSent).toBe(100_000);
  });
});

describe('throttle', () => {
  test('limits each of two parallel connections to the configured rate', async () => {
    const f = srv.addFile('/t.bin', { size: 100_000, throttle: 200_000 });
    const timed = async (): Promise<number> => {
      const t0 = Date.now();
      const r = await get(f.url);
      expect(r.body.equals(f.data)).toBe(true);
      return Date.now() - t0;
    };
    const t0 = Date.now();
    const [a, b] = await Promise.all([timed(), timed()]);
    // 100 kB at 200 kB/s is ~0.5 s per connection; only a loose lower bound, so CI load cannot flake it.
    expect(a).toBeGreaterThanOrEqual(300);
    expect(b).toBeGreaterThanOrEqual(300);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  test('close() resolves promptly with throttled responses in flight', async () => {
    const f = srv.addFile('/t.bin', { size: 1_000_000, throttle: 50_000 });
    const c = open(f.url);
    await srv.waitForBytes('/t.bin', 1);
    await within(srv.close(), 2000, 'close() during a throttled response');
    const done = await within(c.closed, 2000, 'client after close()');
    expect(done.complete).toBe(false);
    expect(srv.requests[0]?.finished).toBe(false);
  });
});

describe('records and waiters', () => {
  test('requests log records method, url, range header, status and bytes', async () => {
    const f = srv.addFile('/l.bin', { size: 2000 });
    await get(`${f.url}?token=1`, { headers: { Range: 'bytes=500-' } });
    const rec = await srv.waitForRequest((r) => r.range === 'bytes=500-' && r.finished);
    expect(rec).toMatchObject({ method: 'GET', path: '/l.bin', url: '/l.bin?token=1', status: 206, bytesSent: 1500, finished: true });
    expect(rec.headers['range']).toBe('bytes=500-');
    expect(rec.startedAt).toBeLessThanOrEqual(Date.now());
  });

  test('waitForRequest resolves for a later request and rejects on timeout with a clear message', async () => {
    srv.addFile('/w.bin', { size: 10 });
    const waiting = srv.waitForRequest((r) => r.path === '/w.bin');
    await get(`${srv.url}/w.bin`);
    expect((await waiting).path).toBe('/w.bin');
    await expect(srv.waitForRequest((r) => r.path === '/never', 100)).rejects.toThrow(/waitForRequest.*timed out after 100 ms/);
    await expect(srv.waitForBytes('/w.bin', 11, 100)).rejects.toThrow(/waitForBytes: \/w.bin reached 10 of 11 bytes/);
  });

  test('route() serves a custom handler and the request is recorded', async () => {
    srv.route('/api/models/*', (req, res) => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ url: req.url }));
    });
    const r = await get(`${srv.url}/api/models/42?x=1`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString())).toEqual({ url: '/api/models/42?x=1' });
    const rec = await srv.waitForRequest((x) => x.url === '/api/models/42?x=1' && x.finished);
    expect(rec.status).toBe(200);
    expect(rec.bytesSent).toBe(r.body.length);
  });
});
