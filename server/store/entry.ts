import crypto from 'node:crypto';
import type { DownloadStatus, Entry, ErrorInfo, GroupRef, StatusView } from '../protocol/wire';
import { isStatus } from '../protocol/status';
import { parseSourceUrl, redactUrl } from '../net/url-policy';

/** Epoch seconds as a float, the seed's time format. */
export const nowSeconds = (): number => Date.now() / 1000;

export const newId = (): string => crypto.randomBytes(8).toString('hex');

/** The one place a download entry is made. */
export function createEntry(init: {
  id?: string;
  dest: string;
  folder: string;
  filename: string;
  url: string;
  sha256?: string;
  git_oid?: string;
  status?: DownloadStatus;
  file_size?: number | null;
  downloaded?: number;
  completion_time?: number;
  group?: GroupRef;
}): Entry {
  const t = nowSeconds();
  const entry: Entry = {
    id: init.id ?? newId(),
    dest: init.dest,
    folder: init.folder,
    filename: init.filename,
    url: init.url,
    status: init.status ?? 'queued',
    progress: 0,
    downloaded: init.downloaded ?? 0,
    file_size: init.file_size ?? null,
    speed: 0,
    eta: null,
    start_time: t,
    timestamp: t,
    attempts: 0,
  };
  if (init.completion_time !== undefined) entry.completion_time = init.completion_time;
  if (init.sha256) entry.sha256 = init.sha256.toLowerCase();
  if (init.git_oid) entry.git_oid = init.git_oid.toLowerCase();
  if (init.group) entry.group = { id: init.group.id, name: init.group.name };
  entry.progress = progressOf(entry.downloaded, entry.file_size);
  return entry;
}

export function progressOf(downloaded: number, size: number | null): number {
  if (!size || size <= 0) return 0;
  return Math.max(0, Math.min(100, Math.floor((downloaded / size) * 100)));
}

/** A change to an entry; `error: undefined` removes the error. */
export type EntryPatch = Partial<Entry> & { error?: ErrorInfo | undefined };

/** A new entry object with `patch` applied and `timestamp`/`progress` kept consistent. */
export function patchEntry(entry: Entry, patch: EntryPatch): Entry {
  const next: Entry = { ...entry, ...patch, timestamp: nowSeconds() };
  if (patch.error === undefined && 'error' in patch) delete next.error;
  // While verifying, progress is that of the checksum pass over the bytes already on disk.
  next.progress =
    next.status === 'completed' ? 100 : next.status === 'verifying' && patch.progress !== undefined ? patch.progress : progressOf(next.downloaded, next.file_size);
  return next;
}

const MB = 1024 * 1024;
const round1 = (n: number): number => Math.round(n * 10) / 10;

/** `GET /status`'s seed-compatible view: the entry plus display fields in MB and minutes. */
export function toStatusView(e: Entry): StatusView {
  return {
    ...e,
    file_size_mb: e.file_size === null ? null : round1(e.file_size / MB),
    downloaded_mb: round1(e.downloaded / MB),
    speed_mb: round1(e.speed / MB),
    eta_minutes: e.eta === null ? null : round1(e.eta / 60),
  };
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

/**
 * Validates one value read from the status file. Returns a clean entry, or a reason it was
 * unusable. Unknown fields (such as the seed's `_mb` ones) are dropped.
 */
export function parseEntry(key: string, value: unknown): Entry | string {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return 'not an object';
  const v = value as Record<string, unknown>;
  if (!isStr(v.url)) return 'no url';
  // The file is as untrusted as a request (another process may write it): a URL the API would
  // refuse (data:, file:, credentials, a metadata address) is never fetched, and a token or
  // signature stored by an older version is never served.
  let url: string;
  try {
    url = redactUrl(parseSourceUrl(v.url));
  } catch (err) {
    return `unusable url (${(err as { code?: string }).code ?? 'INVALID_URL'})`;
  }
  if (!isStatus(v.status)) return `unknown status ${JSON.stringify(v.status)}`;
  const slash = key.lastIndexOf('/');
  if (slash <= 0) return 'key is not <folder>/<filename>';
  const downloaded = isNum(v.downloaded) && v.downloaded >= 0 ? Math.floor(v.downloaded) : 0;
  const fileSize = isNum(v.file_size) && v.file_size >= 0 ? Math.floor(v.file_size) : null;
  const t = nowSeconds();
  const entry: Entry = {
    id: isStr(v.id) && /^[A-Za-z0-9_-]{1,64}$/.test(v.id) ? v.id : newId(),
    dest: key,
    folder: key.slice(0, slash),
    filename: key.slice(slash + 1),
    url,
    status: v.status,
    progress: 0,
    downloaded,
    file_size: fileSize,
    speed: 0,
    eta: null,
    start_time: isNum(v.start_time) ? v.start_time : t,
    timestamp: isNum(v.timestamp) ? v.timestamp : t,
    attempts: isNum(v.attempts) && v.attempts >= 0 ? Math.floor(v.attempts) : 0,
  };
  if (isNum(v.completion_time)) entry.completion_time = v.completion_time;
  if (isStr(v.sha256) && /^[0-9a-f]{64}$/i.test(v.sha256)) entry.sha256 = v.sha256.toLowerCase();
  if (isStr(v.git_oid) && /^[0-9a-f]{40}$/i.test(v.git_oid)) entry.git_oid = v.git_oid.toLowerCase();
  const group = parseGroup(v.group);
  if (group) entry.group = group;
  const err = v.error as Record<string, unknown> | undefined;
  if (err && typeof err === 'object' && isStr(err.code) && isStr(err.message)) {
    entry.error = { code: err.code, message: err.message };
  } else if (isStr(v.error)) {
    entry.error = { code: 'ERROR', message: v.error }; // the seed stored a bare message
  }
  entry.progress = entry.status === 'completed' ? 100 : progressOf(downloaded, fileSize);
  return entry;
}

const GROUP_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** A group as stored (another process may have written it): a usable id, a clean name, or none. */
export function parseGroup(value: unknown): GroupRef | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const g = value as Record<string, unknown>;
  if (!isStr(g.id) || !GROUP_ID.test(g.id) || !isStr(g.name)) return undefined;
  const name = g.name.replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, '').trim().slice(0, 200);
  return { id: g.id, name: name || g.id };
}
