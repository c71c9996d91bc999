import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { AppError, errnoOf } from '../errors';
import { redactUrl } from '../url-policy';
import { ChunkWriter } from './chunk-writer';
import { openStream, networkError } from './http-client';
import { partPath, readMeta, removePart, writeMeta, partSize } from './part-file';
import { isRetryableStatus, parseRetryAfter } from './retry-delay';
import { describeHttpError } from './http-errors';
import type { Expectations, ResolvedSource } from './source';

/** What carries over between the attempts of one run of a download. */
export interface TransferState {
  /** sha256 of the bytes 0…hashedBytes, when they all came through this process in order. */
  hash?: crypto.Hash;
  hashedBytes: number;
  /** Bytes this run received in all its attempts (to tell progress from a stuck retry loop). */
  received: number;
  /** What the source said of the file (size, sha256): verified after the transfer. */
  expected: Expectations;
}

export interface AttemptOptions {
  /** What to fetch; its URL may carry credentials, so it lives in memory only. */
  source: ResolvedSource;
  /** Final path; bytes go to `<abs>.part`. */
  abs: string;
  signal: AbortSignal;
  /** Abort an attempt when no byte arrives for this long. */
  stallMs: number;
  progressIntervalMs: number;
  /** Hash while streaming (an expected sha256 is known). */
  wantHash: boolean;
  state: TransferState;
  /** Headers arrived and bytes are about to flow from `offset`. */
  onStart(offset: number, total: number | null): void;
  onProgress(downloaded: number, total: number | null): void;
  log?: (message: string) => void;
}

export interface AttemptResult {
  /** Bytes in the finished `.part`. */
  size: number;
  /** The server's total, when it said. */
  total: number | null;
}

/** A `Content-Range: bytes a-b/total` header, parsed. */
function parseContentRange(value: string | undefined): { start: number; total: number | null } | undefined {
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { start: m[1] === undefined ? -1 : Number(m[1]), total: m[2] === '*' ? null : Number(m[2]) };
}

const isStrongEtag = (etag: string | undefined): etag is string => !!etag && !etag.startsWith('W/');

/**
 * One attempt at moving the rest of a file into its `.part`: asks for the bytes after those on
 * disk (Range, with If-Range so a changed file is never spliced onto an old one), and appends them.
 * Resolves when the `.part` holds the whole file; throws an AppError (retryable or not) otherwise.
 */
export async function attemptTransfer(o: AttemptOptions): Promise<AttemptResult> {
  const part = partPath(o.abs);
  const { url } = o.source;
  const storedUrl = redactUrl(url);
  await fsp.mkdir(path.dirname(o.abs), { recursive: true }).catch((err: unknown) => {
    throw diskError(err, o.abs);
  });

  let offset = await partSize(o.abs);
  const meta = offset > 0 ? await readMeta(o.abs) : undefined;
  if (offset > 0 && (!meta || meta.url !== storedUrl || (meta.fileSize !== null && offset > meta.fileSize))) {
    o.log?.(`${path.basename(o.abs)}: the partial file does not belong to this source; starting over`);
    await removePart(o.abs);
    offset = 0;
  }

  const headers: Record<string, string> = {};
  if (offset > 0) {
    headers.Range = `bytes=${offset}-`;
    const validator = isStrongEtag(meta?.etag) ? meta.etag : meta?.lastModified;
    if (validator) headers['If-Range'] = validator;
  }

  // Our own controller: the caller's signal (pause, cancel, shutdown) or a stall aborts it.
  const local = new AbortController();
  const onOuterAbort = (): void => local.abort(o.signal.reason);
  o.signal.addEventListener('abort', onOuterAbort, { once: true });
  let lastData = Date.now();
  let stalled = false;
  const stallTimer = setInterval(() => {
    if (Date.now() - lastData > o.stallMs) {
      stalled = true;
      local.abort(new AppError('STALLED', `no data arrived for ${Math.round(o.stallMs / 1000)} s`, { retryable: true }));
    }
  }, Math.max(50, Math.min(1000, o.stallMs / 4)));

  try {
    const res = await openStream(url, { headers, ...(o.source.headersFor ? { headersFor: o.source.headersFor } : {}), signal: local.signal });
    const host = res.url.host;
    let total: number | null = null;
    const contentLength = res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : null;

    if (res.status === 206) {
      const range = parseContentRange(res.headers['content-range']);
      if (!range || range.start !== offset) {
        res.body.destroy();
        await removePart(o.abs);
        throw new AppError('BAD_RANGE', `${host} answered a different range than asked for; starting over`, { retryable: true });
      }
      total = range.total;
    } else if (res.status === 200) {
      if (offset > 0) {
        // The server ignored Range, or If-Range said the file changed: never append to the old bytes.
        o.log?.(`${path.basename(o.abs)}: ${host} sent the whole file instead of a range; starting over from 0`);
        offset = 0;
      }
      total = contentLength !== null && Number.isFinite(contentLength) ? contentLength : null;
    } else if (res.status === 416) {
      res.body.destroy();
      const range = parseContentRange(res.headers['content-range']);
      if (offset > 0 && range?.total === offset) return { size: offset, total: offset }; // already complete
      await removePart(o.abs);
      throw new AppError('RANGE_NOT_SATISFIABLE', `${host} could not serve the rest of the file; starting over`, { retryable: true });
    } else {
      res.body.destroy();
      const retryAfter = parseRetryAfter(res.headers['retry-after']);
      throw new AppError(`HTTP_${res.status}`, o.source.describeStatus?.(res.status, res.url) ?? describeHttpError(res.status, res.url), {
        retryable: isRetryableStatus(res.status),
        ...(retryAfter === undefined ? {} : { retryAfter }),
      });
    }

    await refuseNonFile(res, o.abs);
    const expected = o.source.inspect?.({ status: res.status, url: res.url, headers: res.headers, firstHeaders: res.firstHeaders });
    if (expected) o.state.expected = { ...o.state.expected, ...expected };

    await writeMeta(o.abs, {
      url: storedUrl,
      ...(res.headers.etag ? { etag: res.headers.etag } : {}),
      ...(res.headers['last-modified'] ? { lastModified: res.headers['last-modified'] } : {}),
      fileSize: total,
    }).catch((err: unknown) => {
      throw diskError(err, o.abs);
    });

    if (offset === 0) {
      o.state.hash = o.wantHash || o.state.expected.sha256 ? crypto.createHash('sha256') : undefined;
      o.state.hashedBytes = 0;
    } else if (o.state.hash && o.state.hashedBytes !== offset) {
      o.state.hash = undefined; // the bytes on disk are not the ones hashed: verify after the transfer
    }
    const hash = o.state.hash;

    o.onStart(offset, total);
    let received = 0;
    let lastReport = 0;
    const file = await fsp.open(part, offset > 0 ? 'r+' : 'w').catch((err: unknown) => {
      throw diskError(err, o.abs);
    });
    try {
      if (offset === 0) await file.truncate(0);
      const writer = new ChunkWriter(file, offset);
      try {
        await readInto(res.body, local.signal, (chunk) => {
          received += chunk.length;
          hash?.update(chunk);
          const now = Date.now();
          lastData = now;
          if (now - lastReport >= o.progressIntervalMs) {
            lastReport = now;
            o.onProgress(offset + writer.written, total);
          }
          return writer.push(chunk) ? undefined : writer.drained();
        });
      } finally {
        // Whatever arrived before a failure is kept: it is where the next attempt resumes.
        await writer.flush().catch((err: unknown) => {
          if (!local.signal.aborted) throw err;
        });
      }
    } finally {
      o.state.received += received;
      if (hash) o.state.hashedBytes += received;
      await file.close();
    }
    const size = offset + received;
    o.onProgress(size, total);
    if (total !== null && size < total) {
      throw new AppError('INCOMPLETE', `${host} closed the connection after ${size} of ${total} bytes`, { retryable: true });
    }
    if (total !== null && size > total) {
      await removePart(o.abs);
      throw new AppError('SIZE_MISMATCH', `${host} sent ${size} bytes but announced ${total}`, { retryable: true });
    }
    return { size, total };
  } catch (err) {
    if (o.signal.aborted) throw o.signal.reason ?? err;
    if (stalled) throw local.signal.reason;
    if (err instanceof AppError) throw err;
    const errno = errnoOf(err);
    if (errno && DISK_ERRNOS.has(errno)) throw await describeDiskError(err, o.abs);
    throw networkError(err, url);
  } finally {
    clearInterval(stallTimer);
    o.signal.removeEventListener('abort', onOuterAbort);
  }
}

const DISK_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EIO', 'EFBIG']);

function diskError(err: unknown, abs: string): AppError {
  const errno = errnoOf(err) ?? 'EIO';
  return new AppError(errno, `cannot write ${path.basename(abs)}: ${(err as Error).message}`, { cause: err });
}

/** A disk failure, with the free space when the disk is full. Not retried: it needs a person. */
async function describeDiskError(err: unknown, abs: string): Promise<AppError> {
  const errno = errnoOf(err) ?? 'EIO';
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    let free = '';
    try {
      const s = await fsp.statfs(path.dirname(abs));
      free = `: ${s.bavail * s.bsize} bytes free`;
    } catch {
      // statfs unavailable: the plain message will do
    }
    return new AppError(errno, `disk full${free}; the partial file is kept, free some space and press retry`, { cause: err });
  }
  if (errno === 'EROFS' || errno === 'EACCES' || errno === 'EPERM') {
    return new AppError(errno, `cannot write to ${path.dirname(abs)}: permission denied or read-only`, { cause: err });
  }
  return diskError(err, abs);
}

/**
 * A web page or a JSON answer where a model file was expected is a login page or an error, never
 * a model: refuse it with what the server said, before a byte is written.
 */
async function refuseNonFile(res: { headers: Record<string, string | undefined>; body: NodeJS.ReadableStream & { destroy(): void }; url: URL }, abs: string): Promise<void> {
  const type = (res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const page = type === 'text/html' && !/\.html?$/i.test(abs);
  const json = type === 'application/json' && !/\.json$/i.test(abs);
  if (!page && !json) return;
  let text = '';
  try {
    for await (const chunk of res.body) {
      text += chunk.toString();
      if (text.length > 2000) break;
    }
  } catch {
    // what we have is enough
  } finally {
    res.body.destroy();
  }
  const said = page ? (/<title[^>]*>([^<]{1,200})/i.exec(text)?.[1]?.trim() ?? '') : text.replace(/\s+/g, ' ').slice(0, 200);
  throw new AppError(
    'NOT_A_FILE',
    `${res.url.host} answered with ${page ? 'a web page' : 'a JSON message'} instead of the file${said ? ` (${said})` : ''}: usually a login page or an error; check the URL and the token`,
  );
}

/**
 * Feeds a response body to `onChunk`, pausing the socket while the promise it returns is pending
 * (disk backpressure). Resolves at the end of the body; rejects on a transport error or abort.
 */
function readInto(body: NodeJS.ReadableStream & { destroy(err?: Error): void }, signal: AbortSignal, onChunk: (chunk: Buffer) => Promise<void> | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const finish = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      body.removeListener('data', onData);
      if (err) {
        body.destroy();
        reject(err);
      } else resolve();
    };
    const onAbort = (): void => finish(signal.reason ?? new Error('aborted'));
    const onData = (chunk: Buffer): void => {
      let wait: Promise<void> | undefined;
      try {
        wait = onChunk(chunk);
      } catch (err) {
        finish(err);
        return;
      }
      if (wait) {
        body.pause();
        wait.then(() => body.resume(), finish);
      }
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    body.on('data', onData);
    body.once('end', () => finish());
    body.once('error', finish);
    body.once('close', () => finish(Object.assign(new Error('the connection closed early'), { code: 'ECONNRESET' })));
  });
}
