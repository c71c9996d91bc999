import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFileServer, type FileServer, type RouteHandler } from '../helpers/file-server';
import { startTestServer, waitFor, type TestServer } from '../helpers/harness';

// A segment's 206 is held to the rules of every range appended to stored bytes
// (net/content-range.ts, as the one-connection resume): the start asked for, no end past the one
// asked for, a Content-Length that is the range's length, the total every range of the download
// had. An answer that breaks one is not written; a new total means the file changed: start over.

let files: FileServer;
let srv: TestServer | undefined;
beforeEach(async () => {
  files = await startFileServer();
});
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
  await files.close();
});

const KiB = 1024;
const SIZE = 2 * 1024 * KiB; // four ranges of 512 KiB with CONNECTIONS=4
const start = (): Promise<TestServer> => startTestServer({ CONNECTIONS: '4' }, { downloader: { minSegmentBytes: 256 * KiB } });

/** What a twisted answer says instead of the truth. */
interface Answer {
  contentRange?: string;
  contentLength?: number;
  body: Buffer;
}

/**
 * Serves `data()` with ranges, no ETag and no Last-Modified (so If-Range cannot tell a change), and
 * lets `twist` answer a range request (`from`-`to` asked) its own way. Records the ranges asked.
 */
function rangeRoute(data: () => Buffer, asked: string[], twist: (from: number, to: number, d: Buffer) => Answer | undefined): RouteHandler {
  return (req, res) => {
    const d = data();
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'Content-Length': d.length, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' });
      res.end(d);
      return;
    }
    asked.push(req.headers.range!);
    const from = Number(m[1]);
    const to = m[2] ? Math.min(Number(m[2]), d.length - 1) : d.length - 1;
    const a = twist(from, to, d) ?? { body: d.subarray(from, to + 1) };
    res.writeHead(206, {
      'Accept-Ranges': 'bytes',
      'Content-Range': a.contentRange ?? `bytes ${from}-${to}/${d.length}`,
      'Content-Length': a.contentLength ?? a.body.length,
      'Content-Type': 'application/octet-stream',
    });
    res.end(a.body);
  };
}

/** The first range request after the probe gets `answer`; every other one the truth. */
function once(answer: (from: number, to: number, d: Buffer) => Answer): (from: number, to: number, d: Buffer) => Answer | undefined {
  let done = false;
  return (from, to, d) => {
    if (done || (from === 0 && to === 0)) return undefined;
    done = true;
    return answer(from, to, d);
  };
}

async function settle(s: TestServer, url: string): Promise<Entry> {
  const res = await s.api('POST', '/api/downloads', { url, folder: 'loras' });
  expect(res.status).toBe(202);
  const id = res.body.download.id as string;
  return waitFor(() => {
    const e = s.store.getById(id);
    return e?.status === 'completed' || e?.status === 'error' ? e : undefined;
  }, 'completed or error', 20_000);
}

async function expectExactFile(s: TestServer, name: string, data: Buffer): Promise<void> {
  const got = await fs.readFile(path.join(s.modelsDir, 'loras', name));
  expect(got.length).toBe(data.length);
  expect(got.equals(data)).toBe(true);
  await expect(fs.access(path.join(s.modelsDir, 'loras', `${name}.part`))).rejects.toThrow();
  await expect(fs.access(path.join(s.modelsDir, 'loras', `${name}.part.json`))).rejects.toThrow();
}

test('a Content-Length that is not the length of the Content-Range: not written, the range asked again, the exact file (no sha256 to catch it)', async () => {
  srv = await start();
  const data = crypto.randomBytes(SIZE);
  const asked: string[] = [];
  // 16 bytes of junk before the range's bytes, counted in Content-Length but not in Content-Range.
  files.route('/len.bin', rangeRoute(() => data, asked, once((from, to, d) => ({ body: Buffer.concat([Buffer.alloc(16, 0x55), d.subarray(from, to + 1)]) }))));
  const e = await settle(srv, `${files.url}/len.bin`);
  expect(e.status).toBe('completed');
  await expectExactFile(srv, 'len.bin', data);
  expect(srv.log.lines.some((l) => /Content-Length \(\d+\) is not the length of its Content-Range/.test(l))).toBe(true);
  const from = /^bytes=(\d+)-/.exec(asked.find((r) => r !== 'bytes=0-0')!)![1];
  expect(asked.filter((r) => r !== 'bytes=0-0' && r.startsWith(`bytes=${from}-`)).length).toBe(2); // refused, then asked again from the same byte
});

test('a range that starts elsewhere than asked: not written, refused with the words of the one-connection resume', async () => {
  // The segmented path refused this before too ("answered a different range than asked for"); now with the shared words.
  srv = await start();
  const data = crypto.randomBytes(SIZE);
  const asked: string[] = [];
  files.route('/start.bin', rangeRoute(() => data, asked, once((from, to, d) => ({ contentRange: `bytes ${from + 1}-${to}/${d.length}`, body: d.subarray(from + 1, to + 1) }))));
  const e = await settle(srv, `${files.url}/start.bin`);
  expect(e.status).toBe('completed');
  await expectExactFile(srv, 'start.bin', data);
  expect(srv.log.lines.some((l) => /: the server answered bytes from \d+ when bytes from \d+ were asked for; retrying/.test(l))).toBe(true);
});

test('a range that ends past the one asked for is refused, not cut', async () => {
  srv = await start();
  const data = crypto.randomBytes(SIZE);
  const asked: string[] = [];
  files.route('/end.bin', rangeRoute(() => data, asked, once((from, _to, d) => ({ contentRange: `bytes ${from}-${d.length - 1}/${d.length}`, body: d.subarray(from) }))));
  const e = await settle(srv, `${files.url}/end.bin`);
  expect(e.status).toBe('completed');
  await expectExactFile(srv, 'end.bin', data);
  expect(srv.log.lines.some((l) => /the server answered bytes up to \d+ when bytes up to \d+ were asked for/.test(l))).toBe(true);
});

test('a file that changed size upstream mid-download (no ETag): the download starts over and ends with the new version, never spliced', async () => {
  srv = await start();
  const before = crypto.randomBytes(SIZE);
  const after = crypto.randomBytes(SIZE + 300 * KiB);
  let current = before;
  const asked: string[] = [];
  // The first range request after the probe finds the new version; from then on every answer is of it.
  files.route('/changed.bin', rangeRoute(() => current, asked, (from, to) => {
    if (!(from === 0 && to === 0)) current = after;
    return undefined;
  }));
  const e = await settle(srv, `${files.url}/changed.bin`);
  expect(e).toMatchObject({ status: 'completed', file_size: after.length });
  await expectExactFile(srv, 'changed.bin', after);
  expect(srv.log.lines.some((l) => l.includes(`the file changed upstream: it is ${after.length} bytes now, ${before.length} before; starting over`))).toBe(true);
  expect(asked.filter((r) => r === 'bytes=0-0').length).toBe(2); // probed again for the new size
});

test('a probe whose 206 does not add up: one connection, from the start, no range trusted', async () => {
  srv = await start();
  const data = crypto.randomBytes(SIZE);
  const asked: string[] = [];
  // The probe's answer says one byte but Content-Length two.
  files.route('/probe.bin', rangeRoute(() => data, asked, (from, to, d) => (from === 0 && to === 0 ? { contentLength: 2, body: d.subarray(0, 2) } : undefined)));
  const e = await settle(srv, `${files.url}/probe.bin`);
  expect(e.status).toBe('completed');
  await expectExactFile(srv, 'probe.bin', data);
  expect(asked).toEqual(['bytes=0-0']); // then one plain GET
  expect(srv.log.lines.some((l) => /Content-Length \(2\) is not the length of its Content-Range \(bytes 0-0\/\d+\); one connection/.test(l))).toBe(true);
});

test('a range split while its answer is on its way is checked against what was asked, not against its new end', async () => {
  srv = await startTestServer({ CONNECTIONS: '2' }, { downloader: { minSegmentBytes: 256 * KiB } });
  const data = crypto.randomBytes(SIZE); // two ranges of 1 MiB
  const asked: string[] = [];
  const half = SIZE / 2;
  let release: (() => void) | undefined;
  const route = rangeRoute(() => data, asked, () => undefined);
  files.route('/split.bin', (req, res) => {
    if (req.headers.range === `bytes=${half}-${SIZE - 1}`) {
      // Held until the idle connection has taken the upper half of this range: then the honest answer to what was asked.
      release = () => route(req, res);
      return;
    }
    route(req, res);
    if (release && new RegExp(`^bytes=(\\d+)-${SIZE - 1}$`).test(req.headers.range ?? '') && req.headers.range !== `bytes=${half}-${SIZE - 1}`) {
      release();
      release = undefined;
    }
  });
  const e = await settle(srv, `${files.url}/split.bin`);
  expect(e.status).toBe('completed');
  await expectExactFile(srv, 'split.bin', data);
  expect(srv.log.lines.some((l) => l.includes('split range'))).toBe(true);
  expect(srv.log.lines.filter((l) => /were asked for/.test(l))).toEqual([]);
  expect(asked.filter((r) => r.startsWith(`bytes=${half}-`))).toEqual([`bytes=${half}-${SIZE - 1}`]); // answered once, written up to the split
});
