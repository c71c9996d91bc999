import fs from 'node:fs';
import path from 'node:path';
import { AppError, errnoOf } from '../errors';
import { networkError, type OpenedResponse } from '../net/http-client';
import { describeHttpError } from '../net/http-errors';
import { isRetryableStatus, parseRetryAfter } from './retry-delay';
import type { ResolvedSource } from './source';

// What every transfer (one stream or many segments) does with a response and its failures.

/** A `Content-Range: bytes a-b/total` header, parsed. */
export function parseContentRange(value: string | undefined): { start: number; total: number | null } | undefined {
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { start: m[1] === undefined ? -1 : Number(m[1]), total: m[2] === '*' ? null : Number(m[2]) };
}

export const isStrongEtag = (etag: string | undefined): etag is string => !!etag && !etag.startsWith('W/');

/** The AppError for an HTTP failure status, worded by the source where it knows better. */
export function failureFor(res: Pick<OpenedResponse, 'status' | 'headers' | 'url'>, source: ResolvedSource): AppError {
  const retryAfter = parseRetryAfter(res.headers['retry-after']);
  return new AppError(`HTTP_${res.status}`, source.describeStatus?.(res.status, res.url) ?? describeHttpError(res.status, res.url), {
    retryable: isRetryableStatus(res.status),
    ...(retryAfter === undefined ? {} : { retryAfter }),
  });
}

/** Any failure of a transfer as an AppError: ours as they are, the disk's with its errno, else the network's. */
export async function classifyFailure(err: unknown, abs: string, url: URL): Promise<AppError> {
  if (err instanceof AppError) return err;
  const errno = errnoOf(err);
  if (errno && DISK_ERRNOS.has(errno)) return describeDiskError(err, abs);
  return networkError(err, url);
}

const DISK_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EIO', 'EFBIG']);

/**
 * A disk failure as an AppError that says what happened and what to do, with the errno as its
 * code. Not retried: it needs a person. Names the file, never the server's absolute path.
 */
/** Whether bytes of the download are on disk to resume from, said as the start of a sentence. */
function keptPart(abs: string): string {
  const part = abs.endsWith('.part') ? abs : `${abs}.part`;
  const size = fs.statSync(part, { throwIfNoEntry: false })?.size ?? 0;
  return size > 0 ? 'the bytes downloaded so far are kept; ' : 'nothing of it was written; ';
}

export function diskError(err: unknown, abs: string): AppError {
  const errno = errnoOf(err) ?? 'EIO';
  // A recursive mkdir on a read-only or forbidden disk fails with ENOENT (Node reports the missing
  // parent it could not create): ask the nearest folder that exists why.
  const code = errno === 'ENOENT' ? (whyUnwritable(path.dirname(abs)) ?? errno) : errno;
  const name = path.basename(abs);
  let message: string;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      message = `disk full${freeSpace(abs)}; ${keptPart(abs)}free some space and press retry`;
      break;
    case 'EROFS':
      message = `cannot write ${name}: its folder is on a read-only disk (EROFS); make it writable and press retry`;
      break;
    case 'EACCES':
    case 'EPERM':
      message = `cannot write ${name}: permission denied (${code}); let the server write to its folder and press retry`;
      break;
    case 'EISDIR':
      message = `cannot write ${name}: a folder has that name; move it away and press retry`;
      break;
    default:
      // Node's own message names the absolute path: say the errno and the call instead.
      message = `cannot write ${name}: ${code}${typeof (err as NodeJS.ErrnoException).syscall === 'string' ? ` (${(err as NodeJS.ErrnoException).syscall})` : ''}`;
  }
  return new AppError(code, message, { cause: err });
}

/** `: N bytes free` on the disk holding `abs` (or its nearest existing folder), or nothing when unknown. */
function freeSpace(abs: string): string {
  try {
    const s = fs.statfsSync(nearestExisting(path.dirname(abs)));
    return `: ${s.bavail * s.bsize} bytes free`;
  } catch {
    return '';
  }
}

function nearestExisting(dir: string): string {
  let at = dir;
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/** The errno that keeps this process from writing in `dir` (EROFS, EACCES), if any. */
function whyUnwritable(dir: string): string | undefined {
  try {
    fs.accessSync(nearestExisting(dir), fs.constants.W_OK);
    return undefined;
  } catch (err) {
    return errnoOf(err);
  }
}

/** A disk failure met while transferring (see diskError). */
async function describeDiskError(err: unknown, abs: string): Promise<AppError> {
  return diskError(err, abs);
}

/**
 * A web page or a JSON answer where a model file was expected is a login page or an error, never
 * a model: refuse it with what the server said (worded by the source where it knows why), before
 * a byte is written. `name` is the file's name or path: a `.html`/`.json` file may be either.
 */
export async function refuseNonFile(
  res: { headers: Record<string, string | undefined>; body: NodeJS.ReadableStream & { destroy(): void }; url: URL },
  name: string,
  source?: Pick<ResolvedSource, 'describeNonFile'>,
): Promise<void> {
  const type = (res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const kind = type === 'text/html' && !/\.html?$/i.test(name) ? 'page' : type === 'application/json' && !/\.json$/i.test(name) ? 'json' : undefined;
  if (!kind) return;
  let text = '';
  try {
    for await (const chunk of res.body) {
      text += String(chunk);
      if (text.length > 2000) break;
    }
  } catch {
    // what arrived is enough
  } finally {
    res.body.destroy();
  }
  const said = kind === 'page' ? (/<title[^>]*>([^<]{1,200})/i.exec(text)?.[1]?.trim() ?? '') : text.replace(/\s+/g, ' ').trim().slice(0, 200);
  const message =
    source?.describeNonFile?.(kind, said) ??
    `${res.url.host} answered with ${kind === 'page' ? 'a web page' : 'a JSON message'} instead of the file${said ? ` (${said})` : ''}: usually a login page or an error; check the URL and the token`;
  throw new AppError('NOT_A_FILE', message, { status: 400 });
}
