/**
 * Network faults, one table run with one connection and with four (segmented): every case ends
 * `completed` with the source's exact bytes, or `error` with a message naming the cause, and the
 * same invariants are checked after each — what is at `dest` (never a wrong byte, not even for a
 * moment), what is left beside it, and the entry as the API, the WebSocket and the status file
 * show it. A failed case is then retried through the API once the fault is gone: its leftovers
 * must not poison the retry.
 *
 * Written against behaviour only (API, WebSocket, status file, disk, the requests the source saw),
 * so it keeps passing when the transfer path is replaced.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../../server/protocol/wire';
import { startFileServer, type Fault, type FileInfo, type FileOptions, type FileServer, type RequestRecord } from '../helpers/file-server';
import { connectWs, startTestServer, waitFor, type TestServer, type TestSocket } from '../helpers/harness';
import { isFinished } from '../../server/protocol/status';

const KiB = 1024;
/** Four segments of 512 KiB with minSegmentBytes at 256 KiB. */
const SIZE = 2 * 1024 * KiB;
const MIN_SEGMENT = 256 * KiB;
/** A connection silent for this long is a stall (the product default is 30 s). */
const STALL_MS = 700;
/** Per connection, for the check that four connections really overlap. */
const THROTTLE = 8 * 1024 * KiB;

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** A request for file content: not a one-byte probe, not a HEAD. Body faults belong on these. */
const bodyRequest = (r: RequestRecord): boolean => r.method === 'GET' && !/^bytes=(\d+)-\1$/.test(r.range ?? '');
/** The byte range `[from, to)` a request asked for (no Range: the whole file). */
function asked(r: RequestRecord): { from: number; to: number } {
  const m = /^bytes=(\d+)-(\d*)$/.exec(r.range ?? '');
  if (!m) return { from: 0, to: SIZE };
  return { from: Number(m[1]), to: m[2] ? Number(m[2]) + 1 : SIZE };
}
const times = <T>(n: number, make: () => T): T[] => Array.from({ length: n }, make);

interface Ctx {
  files: FileServer;
  /** Path of the case's file on the fixture server. */
  path: string;
  /** The file as the source holds it now (a case may change it). */
  current: FileInfo;
  /** The fixture's requests for this case's file. */
  requests(): RequestRecord[];
  entry(): Entry;
}

interface Case {
  name: string;
  file?: Partial<FileOptions>;
  faults?: (ctx: Ctx) => Fault[];
  /** Give the expected sha256 with the request (as the catalog and Hugging Face do). */
  withSha?: boolean;
  /** Runs while the download is under way. */
  during?: (ctx: Ctx) => Promise<void>;
  /** `completed`, or the error message expected; both when either outcome is right. */
  outcome: { completed: true; error?: RegExp } | { completed?: false; error: RegExp };
  /** Extra checks on how it got there (requests, attempts). */
  check?: (ctx: Ctx) => void;
}

const CASES: Case[] = [
  {
    name: 'reset mid-body: resumed where it stopped, not fetched again',
    faults: () => [{ resetAfter: 300 * KiB, when: bodyRequest }],
    outcome: { completed: true },
    check: (c) => {
      const sent = c.requests().reduce((n, r) => n + r.bytesSent, 0);
      expect(sent).toBeLessThan(SIZE + 300 * KiB); // the first 300 KiB were not fetched twice
    },
  },
  {
    name: 'reset before the first byte, every time: error naming the reset',
    faults: () => times(400, () => ({ resetAfter: 0, when: bodyRequest })),
    outcome: { error: /reset|closed/i },
  },
  {
    name: 'stall with no byte at all: aborted after the stall timeout and resumed',
    faults: () => [{ stallAfter: 0, when: bodyRequest }],
    outcome: { completed: true },
    check: (c) => expect(c.entry().attempts).toBeGreaterThanOrEqual(2),
  },
  {
    name: 'stall mid-body: aborted after the stall timeout and resumed',
    faults: () => [{ stallAfter: 200 * KiB, when: bodyRequest }],
    outcome: { completed: true },
    check: (c) => expect(c.entry().attempts).toBeGreaterThanOrEqual(2),
  },
  {
    name: 'slow drip (gaps shorter than the stall timeout): not taken for a stall',
    faults: () => [{ drip: { bytes: 4 * KiB, everyMs: Math.round(STALL_MS / 2), times: 5 }, when: bodyRequest }],
    outcome: { completed: true },
    check: (c) => {
      expect(c.entry().attempts).toBe(1);
      expect(c.requests().some((r) => r.fault?.drip !== undefined)).toBe(true);
    },
  },
  ...[500, 502, 503].map(
    (status): Case => ({
      name: `${status} once: retried`,
      faults: () => [{ status, when: bodyRequest }],
      outcome: { completed: true },
      check: (c) => expect(c.requests().some((r) => r.status === status)).toBe(true),
    }),
  ),
  {
    name: '503 every time: error naming the 503 after the retry budget',
    faults: () => times(400, () => ({ status: 503, when: bodyRequest })),
    outcome: { error: /503/ },
  },
  {
    name: '429 with Retry-After: 1: the refused bytes are asked again only after a second',
    faults: () => [{ status: 429, retryAfter: '1', when: bodyRequest }],
    outcome: { completed: true },
    check: (c) => {
      const refused = c.requests().find((r) => r.status === 429)!;
      const from = asked(refused).from;
      const again = c.requests().filter((r) => r.startedAt > refused.startedAt && r.status !== 429 && asked(r).from <= from && from < asked(r).to);
      expect(again.length).toBeGreaterThan(0);
      expect(Math.min(...again.map((r) => r.startedAt)) - refused.startedAt).toBeGreaterThanOrEqual(950);
    },
  },
  {
    // A well-formed response that is short with no Content-Range to say so cannot be told from a
    // smaller file: only the checksum can. So: caught by the sha256, or completed whole.
    name: 'Content-Length shorter than the body (sha256 known): never a short file',
    withSha: true,
    faults: () => [{ contentLengthDelta: -100 * KiB, when: bodyRequest }],
    outcome: { completed: true, error: /sha256/i },
  },
  {
    name: 'Content-Length shorter than the body on a resumed range: the rest is fetched',
    faults: () => [
      { resetAfter: 300 * KiB, when: bodyRequest },
      { contentLengthDelta: -100 * KiB, when: (r) => bodyRequest(r) && r.range !== undefined },
    ],
    outcome: { completed: true },
  },
  {
    name: 'Content-Length longer than the body (connection closed early): completed',
    faults: () => [{ contentLengthDelta: 100 * KiB, when: bodyRequest }],
    outcome: { completed: true },
  },
  {
    name: 'a server that always answers a Range with 200: started over, never appended to',
    file: { ignoreRange: true },
    faults: () => [{ resetAfter: 300 * KiB, when: bodyRequest }],
    outcome: { completed: true },
    check: (c) => expect(c.requests().some((r) => r.range !== undefined && bodyRequest(r) && r.status === 200)).toBe(true),
  },
  {
    name: 'a Range answered once with 200: started over, never spliced',
    faults: () => [
      { resetAfter: 300 * KiB, when: bodyRequest },
      { ignoreRange: true, when: (r) => bodyRequest(r) && r.range !== undefined },
    ],
    outcome: { completed: true },
    check: (c) => expect(c.requests().some((r) => r.fault?.ignoreRange && r.status === 200)).toBe(true),
  },
  {
    name: 'the file changes upstream between attempts (new ETag): the new version, whole',
    faults: () => [{ resetAfter: 300 * KiB, when: bodyRequest }],
    during: async (c) => {
      await c.files.waitForRequest((r) => r.path === c.path && r.fault?.resetAfter !== undefined);
      const before = c.current;
      c.current = c.files.setFileOptions(c.path, { size: SIZE });
      expect(c.current.sha256).not.toBe(before.sha256);
    },
    outcome: { completed: true },
  },
  {
    name: 'a redirect loop: error naming the loop',
    faults: (c) => times(30, () => ({ redirectTo: `${c.files.url}${c.path}.mirror` })),
    during: async (c) => {
      c.files.fault(`${c.path}.mirror`, ...times(30, () => ({ redirectTo: c.current.url })));
    },
    outcome: { error: /loop/i },
    check: (c) => expect(c.entry().attempts).toBe(1), // a loop is not retried
  },
];

describe.each([1, 4])('network faults with CONNECTIONS=%i', (connections) => {
  let files: FileServer;
  let srv: TestServer;
  let ws: TestSocket;
  // A source per case, so that no case inherits another's connections.
  beforeEach(async () => {
    files = await startFileServer();
  });
  afterEach(async () => {
    await files.close();
  });
  beforeAll(async () => {
    srv = await startTestServer(
      { CONNECTIONS: String(connections) },
      { downloader: { stallMs: STALL_MS, retry: { baseMs: 20, maxMs: 100 }, minSegmentBytes: MIN_SEGMENT } },
    );
    ws = await connectWs(srv.url);
  });
  afterAll(async () => {
    await ws?.close();
    await srv?.stop();
  });

  /** Waits for a final state, checking on every poll that `dest` never holds anything but the source's bytes. */
  async function settle(ctx: Ctx, id: string, abs: string): Promise<Entry> {
    let checked: string | undefined;
    let wrong: string | undefined;
    const e = await waitFor(async () => {
      const st = await fs.stat(abs).catch(() => undefined);
      if (st && checked === undefined) {
        // The first sight of dest must be the whole file: a rename of a verified .part, nothing less.
        checked = !st.isFile() || st.size !== ctx.current.size ? `${st.size} bytes` : sha(await fs.readFile(abs));
        if (checked !== ctx.current.sha256) wrong = `${abs} appeared holding ${checked}, not the source's ${ctx.current.size} bytes (${ctx.current.sha256})`;
      }
      const now = srv.store.getById(id);
      return wrong ?? (now && isFinished(now.status) ? now : undefined);
    }, `download ${id} to finish`, 20_000);
    if (typeof e === 'string') throw new Error(e);
    return e;
  }

  /** What must hold after any case: dest, its folder, the entry in the API, the WebSocket and the status file. */
  async function checkInvariants(ctx: Ctx, e: Entry, outcome: Case['outcome']): Promise<void> {
    const abs = path.join(srv.modelsDir, e.dest);
    const folder = path.dirname(abs);
    const left = (await fs.readdir(folder).catch(() => [] as string[])).sort();
    if (e.status === 'completed') {
      if (!outcome.completed) throw new Error(`expected an error matching ${outcome.error}, but it completed`);
      expect(sha(await fs.readFile(abs))).toBe(ctx.current.sha256);
      expect(e).toMatchObject({ downloaded: ctx.current.size, file_size: ctx.current.size, progress: 100, speed: 0 });
      expect(e.error).toBeUndefined();
      expect(left).toEqual([e.filename]); // no .part, no .part.json, no temp file
    } else {
      expect(e.status).toBe('error');
      if (!outcome.error) throw new Error(`expected completion, got error ${e.error?.code}: ${e.error?.message}`);
      expect(e.error?.message).toMatch(outcome.error);
      await expect(fs.stat(abs)).rejects.toMatchObject({ code: 'ENOENT' });
      // Only what a retry resumes from may stay beside it.
      expect(left.filter((n) => n !== `${e.filename}.part` && n !== `${e.filename}.part.json`)).toEqual([]);
    }
    const api = await srv.api('GET', `/api/downloads/${e.id}`);
    expect(api.body.download).toMatchObject({ status: e.status, downloaded: e.downloaded });
    expect(api.body.download.error).toEqual(e.error);
    await waitFor(() => ws.state.get(e.id)?.status === e.status && ws.state.get(e.id)!.downloaded === e.downloaded, `the WebSocket to show ${e.dest} ${e.status}`);
    await waitFor(async () => {
      const saved = JSON.parse(await fs.readFile(srv.statusFile, 'utf8')) as Record<string, Entry>;
      return saved[e.dest]?.status === e.status && saved[e.dest]!.downloaded === e.downloaded;
    }, `the status file to say ${e.dest} is ${e.status}`);
  }

  if (connections > 1) {
    test('the fixture file really is fetched over several connections at once', async () => {
      const f = files.addFile('/parallel.bin', { size: SIZE, throttle: THROTTLE });
      const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras/parallel' });
      const id = res.body.download.id as string;
      await waitFor(() => srv.store.getById(id)?.status === 'completed', 'completion');
      const body = files.requests.filter((r) => r.path === '/parallel.bin' && bodyRequest(r));
      const overlapping = body.filter((a) => body.some((b) => a !== b && a.startedAt < b.endedAt! && b.startedAt < a.endedAt!));
      expect(overlapping.length).toBeGreaterThanOrEqual(2);
    });
  }

  test.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const filePath = `/c${i}.bin`;
    const ctx: Ctx = {
      files,
      path: filePath,
      current: files.addFile(filePath, { size: SIZE, ...c.file }),
      requests: () => files.requests.filter((r) => r.path === filePath),
      entry: () => srv.store.getById(id)!,
    };
    const original = ctx.current;
    if (c.faults) files.fault(filePath, ...c.faults(ctx));
    const during = Promise.resolve(c.during?.(ctx));
    during.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    const res = await srv.api('POST', '/api/downloads', { url: ctx.current.url, folder: `loras/c${i}`, ...(c.withSha ? { sha256: original.sha256 } : {}) });
    expect(res.status).toBe(202);
    const id = res.body.download.id as string;
    const abs = path.join(srv.modelsDir, res.body.download.dest as string);

    const e = await settle(ctx, id, abs);
    await during;
    await checkInvariants(ctx, e, c.outcome);
    c.check?.(ctx);

    if (e.status === 'error') {
      // The fault is gone: retry through the API resumes (or restarts) and ends with the right bytes.
      files.clearFaults(filePath);
      files.clearFaults(`${filePath}.mirror`);
      const again = await srv.api('POST', `/api/downloads/${id}/retry`);
      expect(again.status).toBe(200);
      const done = await settle(ctx, id, abs);
      await checkInvariants(ctx, done, { completed: true });
    }
  });
});
