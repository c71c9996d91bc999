import { once } from 'node:events';
import path from 'node:path';
import { loadConfig } from '../../server/config';
import { parseRetryAfter, retryDelay, DEFAULT_RETRY } from '../../server/downloader/retry-delay';
import { SpeedMeter } from '../../server/downloader/speed-meter';
import { filenameFromUrl, resolveDest, sanitizeFilename } from '../../server/disk/paths';
import { isForbiddenAddress, parseSourceUrl, redactUrl } from '../../server/net/url-policy';
import { ERROR_CODES } from '../../server/protocol/error-codes';
import { createTransition, IllegalTransitionError, underTest } from '../../server/downloader/transition';
import { attemptAbort } from '../../server/downloader/attempt-abort';
import { AppError } from '../../server/errors';
import { createEntry } from '../../server/store/entry';
import {
  ACTIVE_STATUSES,
  canTransition,
  COMMAND_TARGETS,
  commandFits,
  COMMANDS,
  FINISHED_STATUSES,
  isStatus,
  STATUSES,
  TRANSITIONS,
  type Command,
  type DownloadStatus,
} from '../../server/protocol/status';

describe('retryDelay', () => {
  const policy = { ...DEFAULT_RETRY, baseMs: 1000, maxMs: 8000, maxFailures: 5 };
  test('grows exponentially with jitter between half and all of the step, capped', () => {
    expect(retryDelay({ failures: 1, retryable: true }, policy, () => 0)).toBe(500);
    expect(retryDelay({ failures: 1, retryable: true }, policy, () => 1)).toBe(1000);
    expect(retryDelay({ failures: 3, retryable: true }, policy, () => 1)).toBe(4000);
    expect(retryDelay({ failures: 4, retryable: true }, policy, () => 1)).toBe(8000);
  });
  test('gives up on non-retryable errors and after maxFailures', () => {
    expect(retryDelay({ failures: 1, retryable: false }, policy)).toBeUndefined();
    expect(retryDelay({ failures: 5, retryable: true }, policy)).toBeUndefined();
  });
  test('honours Retry-After, in seconds or as a date, bounded', () => {
    expect(retryDelay({ failures: 1, retryable: true, retryAfter: 7 }, policy)).toBe(7000);
    expect(retryDelay({ failures: 1, retryable: true, retryAfter: 99_999 }, policy)).toBe(600_000);
    expect(parseRetryAfter('120')).toBe(120);
    expect(parseRetryAfter(new Date(10_000 + 30_000).toUTCString(), 10_000)).toBe(30);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

test('SpeedMeter smooths over its window and falls during a silence', () => {
  const m = new SpeedMeter(5000);
  m.sample(0, 0);
  m.sample(1_000_000, 1000);
  m.sample(2_000_000, 2000);
  expect(m.rate(2000)).toBeCloseTo(1_000_000);
  expect(m.rate(4000)).toBeCloseTo(500_000); // nothing arrived for two seconds
  for (let t = 3000; t <= 20_000; t += 1000) m.sample(2_000_000 + (t - 2000) * 3000, t);
  expect(m.rate(20_000)).toBeCloseTo(3_000_000, -4); // the old pace has left the window
});

describe('loadConfig', () => {
  test('defaults, resolved paths, frozen', () => {
    const c = loadConfig({}, '/srv/app');
    expect(c).toMatchObject({ port: 8866, host: '127.0.0.1', modelsDir: path.resolve('/srv/app/models'), statusFile: path.resolve('/srv/app/.download_status.json'), maxConcurrent: 3, connections: 4, retentionHours: 24, staleMinutes: 10, hfEndpoint: 'https://huggingface.co', civitaiEndpoint: 'https://civitai.com' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(c.apiToken).toBeUndefined();
  });
  test.each([
    ['PORT', 'abc', 'Expected PORT to be an integer 0–65535, got `abc`'],
    ['PORT', '70000', 'Expected PORT to be an integer 0–65535, got `70000`'],
    ['MAX_CONCURRENT', '0', 'Expected MAX_CONCURRENT to be an integer 1–64, got `0`'],
    ['CONNECTIONS', '2.5', 'Expected CONNECTIONS to be an integer 1–32, got `2.5`'],
    ['STALE_MINUTES', '-1', 'Expected STALE_MINUTES to be a number > 0, got `-1`'],
    ['HF_ENDPOINT', 'ftp://x', 'Expected HF_ENDPOINT to be an http(s) URL, got `ftp://x`'],
  ])('%s=%s is refused with a clear message', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });
});

describe('destinations', () => {
  const root = path.resolve('/models');
  test('joins a known folder, subfolders allowed', () => {
    expect(resolveDest(root, 'loras/flux', 'a.safetensors')).toEqual({ dest: 'loras/flux/a.safetensors', folder: 'loras/flux', filename: 'a.safetensors', abs: path.join(root, 'loras', 'flux', 'a.safetensors') });
  });
  test.each([
    ['..', 'a'], ['loras/..', 'a'], ['loras', '..'], ['loras', '.'], ['/abs', 'a'], ['loras', 'a\u0000b'], ['loras', 'a\\b'],
    ['loras', 'CON'], ['loras', '.hidden'], ['loras', 'x.part'], ['nowhere', 'a'], ['loras', 'a\nb'], ['', 'a'], ['loras//x', 'a'],
  ])('refuses folder %j with filename %j', (folder, filename) => {
    expect(() => resolveDest(root, folder, filename)).toThrow(expect.objectContaining({ status: 400 }));
  });
  test('filenames from URLs and servers are single safe segments', () => {
    expect(filenameFromUrl(new URL('https://h/x/flux1%20dev.safetensors?download=true'))).toBe('flux1 dev.safetensors');
    expect(filenameFromUrl(new URL('https://h/'))).toBeUndefined();
    expect(sanitizeFilename('../../etc/passwd')).toBe('passwd');
    expect(sanitizeFilename('a:b*c?.bin')).toBe('a_b_c_.bin');
    expect(sanitizeFilename('..')).toBeUndefined();
  });
});

describe('URL policy', () => {
  test('only http(s), no credentials, no link-local or metadata addresses', () => {
    expect(parseSourceUrl('https://huggingface.co/a/b').host).toBe('huggingface.co');
    for (const bad of ['file:///etc/passwd', 'javascript:alert(1)', 'data:text/plain,x', 'ftp://h/x', 'http://u:p@h/x', 'http://169.254.169.254/', 'http://[fe80::1]/x', 'not a url', 'x'.repeat(9000)]) {
      expect(() => parseSourceUrl(bad)).toThrow();
    }
    expect(isForbiddenAddress('169.254.1.1')).toBe(true);
    expect(isForbiddenAddress('::ffff:169.254.169.254')).toBe(true);
    expect(isForbiddenAddress('febf::1')).toBe(true);
    expect(isForbiddenAddress('127.0.0.1')).toBe(false);
    expect(isForbiddenAddress('fd12::1')).toBe(false);
  });
  test('redaction removes tokens and signatures, keeps the rest', () => {
    expect(redactUrl('https://civitai.com/api/download/models/1?type=Model&token=abc')).toBe('https://civitai.com/api/download/models/1?type=Model');
    expect(redactUrl('https://cdn/x?X-Amz-Signature=s&X-Amz-Credential=c&a=1')).toBe('https://cdn/x?a=1');
  });
});

test('while verifying, progress is the checksum pass; otherwise it follows the bytes', () => {
  const { createEntry, patchEntry } = jest.requireActual('../../server/store/entry') as typeof import('../../server/store/entry');
  const e = createEntry({ dest: 'loras/a.bin', folder: 'loras', filename: 'a.bin', url: 'http://h/a.bin', file_size: 1000, downloaded: 1000 });
  expect(e.progress).toBe(100);
  const verifying = patchEntry(patchEntry(e, { status: 'verifying', progress: 0 }), { progress: 42 });
  expect(verifying).toMatchObject({ status: 'verifying', progress: 42, downloaded: 1000 });
  expect(patchEntry(verifying, { status: 'downloading', downloaded: 500 }).progress).toBe(50);
  expect(patchEntry(verifying, { status: 'completed' }).progress).toBe(100);
});

describe('the download state machine', () => {
  const all = (t: Readonly<Record<DownloadStatus, readonly unknown[]>>): string[] => Object.keys(t).sort();
  test('covers every status, and its tables name no other', () => {
    expect(all(TRANSITIONS)).toEqual([...STATUSES].sort());
    expect(all(COMMANDS)).toEqual([...STATUSES].sort());
    for (const to of Object.values(TRANSITIONS).flat()) expect(STATUSES).toContain(to);
    expect(isStatus('paused')).toBe(true);
    expect(isStatus('done')).toBe(false);
    expect(isStatus(undefined)).toBe(false);
  });
  test('active and finished are disjoint; paused is the one status in neither', () => {
    expect(ACTIVE_STATUSES.filter((s) => FINISHED_STATUSES.includes(s))).toEqual([]);
    expect(STATUSES.filter((s) => !ACTIVE_STATUSES.includes(s) && !FINISHED_STATUSES.includes(s))).toEqual(['paused']);
  });
  test('a command leads where the table allows, from every status it fits', () => {
    for (const status of STATUSES) {
      for (const [command, to] of Object.entries(COMMAND_TARGETS) as Array<[Command, DownloadStatus]>) {
        if (commandFits(command, status)) expect([status, command, canTransition(status, to)]).toEqual([status, command, true]);
      }
    }
  });
  test('the commands that fit each status', () => {
    const fitting = (command: Command): DownloadStatus[] => STATUSES.filter((s) => commandFits(command, s));
    expect(fitting('pause')).toEqual(['queued', 'starting', 'downloading']);
    expect(fitting('resume')).toEqual(['paused']);
    expect(fitting('cancel')).toEqual(STATUSES.filter((s) => !FINISHED_STATUSES.includes(s)));
    expect(fitting('retry')).toEqual(['error', 'cancelled']);
    expect(fitting('remove')).toEqual([...FINISHED_STATUSES]);
  });
  test('the page takes it at runtime, as ../server/protocol/status.js (jest maps the .js to the .ts)', async () => {
    const row = await import('../../client/download-row');
    expect(Object.keys(row.STATUS_LABELS).sort()).toEqual([...STATUSES].sort());
  });
  test('what the downloader does is allowed, and nothing else gets out of a finished status', () => {
    // A restart or shutdown puts every active download back in the queue.
    for (const s of ACTIVE_STATUSES) expect([s, canTransition(s, 'queued')]).toEqual([s, true]);
    // A running job can fail, and the stale check ends one whose process died.
    for (const s of ['starting', 'downloading', 'verifying'] as const) expect([s, canTransition(s, 'error')]).toEqual([s, true]);
    expect(canTransition('starting', 'downloading')).toBe(true);
    expect(canTransition('downloading', 'starting')).toBe(true); // a retry's backoff
    expect(canTransition('downloading', 'verifying')).toBe(true);
    expect(canTransition('verifying', 'completed')).toBe(true);
    expect(TRANSITIONS.completed).toEqual([]);
    expect(TRANSITIONS.error).toEqual(['queued']);
    expect(canTransition('completed', 'completed')).toBe(true); // keeping a status is no change
    for (const [from, to] of [['paused', 'downloading'], ['paused', 'starting'], ['queued', 'downloading'], ['queued', 'completed'], ['verifying', 'paused'], ['error', 'starting'], ['completed', 'queued']] as const) {
      expect([from, to, canTransition(from, to)]).toEqual([from, to, false]);
    }
  });
});

describe('transition: the one way the downloader changes a status', () => {
  const captureLogger = (): { lines: string[]; warn: (m: string) => void } => {
    const lines: string[] = [];
    return { lines, warn: (m) => lines.push(`warn ${m}`) };
  };
  const entry = (status: DownloadStatus) => createEntry({ dest: 'loras/a.bin', folder: 'loras', filename: 'a.bin', url: 'http://h/a.bin', status, file_size: 1000 });
  test('a change in the table is made, with its patch', () => {
    const log = captureLogger();
    const next = createTransition({ log, strict: true })(entry('downloading'), 'paused', { speed: 0, eta: null, downloaded: 500 });
    expect(next).toMatchObject({ status: 'paused', speed: 0, eta: null, downloaded: 500, progress: 50 });
    expect(log.lines).toEqual([]);
  });
  test('under tests an illegal change throws and changes nothing', () => {
    expect(underTest()).toBe(true);
    const e = entry('completed');
    expect(() => createTransition({ log: captureLogger() })(e, 'downloading')).toThrow(IllegalTransitionError);
    expect(() => createTransition({ log: captureLogger() })(e, 'downloading')).toThrow('illegal status change of loras/a.bin: completed → downloading');
    expect(e.status).toBe('completed');
  });
  test('in production an illegal change is logged and made anyway', () => {
    const log = captureLogger();
    expect(createTransition({ log, strict: false })(entry('paused'), 'downloading').status).toBe('downloading');
    expect(log.lines).toEqual([expect.stringMatching(/^warn illegal status change of loras\/a\.bin: paused → downloading .*; made anyway$/)]);
  });
});

describe('attemptAbort: the signal of one attempt, linked to the job and watched for stalls', () => {
  const stalledError = (): AppError => new AppError('STALLED', 'no data', { retryable: true });
  test("the caller's abort passes through with its reason, and is not a stall", () => {
    const outer = new AbortController();
    const a = attemptAbort(outer.signal, { stallMs: 60_000, poll: () => undefined });
    const reason = new Error('pause');
    outer.abort(reason);
    expect(a.signal.aborted).toBe(true);
    expect(a.signal.reason).toBe(reason);
    expect(a.stalled).toBe(false);
    a.dispose();
  });
  test('a caller that aborted before the attempt began aborts it at once', () => {
    const outer = new AbortController();
    const reason = new Error('pause');
    outer.abort(reason);
    const a = attemptAbort(outer.signal, { stallMs: 60_000, poll: () => undefined });
    expect(a.signal.reason).toBe(reason);
    a.dispose();
  });
  test('a poll that reports a stall aborts with its error and marks it stalled', async () => {
    let stalled = false;
    const a = attemptAbort(new AbortController().signal, { stallMs: 200, poll: () => (stalled ? stalledError() : undefined) });
    stalled = true;
    await once(a.signal, 'abort');
    expect(a.stalled).toBe(true);
    expect(a.signal.reason).toMatchObject({ code: 'STALLED' });
    a.dispose();
  });
  test('a deadline aborts when no answer came in time', async () => {
    const a = attemptAbort(new AbortController().signal, { stallMs: 50, deadline: stalledError });
    await once(a.signal, 'abort');
    expect(a.signal.reason).toMatchObject({ code: 'STALLED' });
    a.dispose();
  });
  test("dispose lets go of the caller's signal and stops the watch; abortUnread ends the request", () => {
    jest.useFakeTimers();
    try {
      const outer = new AbortController();
      let polls = 0;
      const a = attemptAbort(outer.signal, { stallMs: 200, poll: () => (polls++, undefined) });
      jest.advanceTimersByTime(50);
      expect(polls).toBe(1);
      a.dispose({ abortUnread: true });
      jest.advanceTimersByTime(1000);
      expect(polls).toBe(1);
      expect(a.signal.reason).toMatchObject({ code: 'ABORTED', message: 'transfer over' });
      const b = attemptAbort(outer.signal, { stallMs: 50, deadline: stalledError });
      b.dispose();
      jest.advanceTimersByTime(1000);
      outer.abort(new Error('late'));
      expect(b.signal.aborted).toBe(false); // unlinked, its deadline cleared, and no ABORTED without abortUnread
    } finally {
      jest.useRealTimers();
    }
  });
});

test('every registered error code is UPPER_SNAKE and has a one-line meaning', () => {
  for (const [code, meaning] of Object.entries(ERROR_CODES)) {
    expect(code).toMatch(/^[A-Z][A-Z0-9_]*$/);
    expect(meaning).toMatch(/^[^\n]{10,120}$/);
  }
});
