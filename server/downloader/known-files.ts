/**
 * "Already have it": a completed download remembers its sha256 (the expected one, or the one
 * computed while it was verified), so a request that names the same sha256 for another
 * destination is answered with where the file already is — or, with `link: true`, by a hard link
 * at the new destination and a `completed` entry for it, without a byte fetched.
 *
 * A completed entry is trusted as long as its file is still there as it was left: a regular file
 * (not a link to elsewhere) of the entry's size, not modified since the download completed (its
 * mtime no later than `completion_time`, with a little slack for a network volume's clock), and
 * not put there since either: its ctime — which a rename into place, `cp -p` or `mv` of another
 * file sets to when they happened, whatever mtime they keep — no later than the last time an
 * entry vouched for that file (a download completed, or a hard link was made, at one of its
 * names: making a link moves the file's ctime too). The file is not hashed again: that would read
 * 30 GB inside a request. A file rewritten in place to the same size with its mtime set back is
 * not noticed; anything else falls back to a download.
 *
 * Everything here is synchronous: Downloader.add calls it between its duplicate check and
 * store.put, where nothing may await (two requests in one tick must not both pass).
 */
import fs from 'node:fs';
import path from 'node:path';
import { AppError, errnoOf } from '../errors';
import type { Logger } from '../logger';
import { metaPath, partPath } from '../disk/part-file';
import { resolveDest, type Destination } from '../disk/paths';
import type { AddResult, Entry, GroupRef } from '../protocol/wire';
import { createEntry, nowSeconds } from '../store/entry';
import type { StatusStore } from '../store/status-store';

/** A completed download whose file is still there, as it was left. */
export interface SameFile {
  entry: Entry;
  /** Absolute path of its file. */
  abs: string;
  size: number;
}

/**
 * How much later than `completion_time` a file's mtime (or ctime) may be and still count as
 * unchanged: they are the volume's clock (an NFS server's), `completion_time` ours. A larger skew only costs
 * a download that was not needed.
 */
const MTIME_SLACK_MS = 2000;

/**
 * Whether an entry's final file is still there, of its size and not modified since it completed;
 * its stat when it is. (Whether it was put there since is findSameFile's check of the ctime.)
 */
export function unchangedSince(entry: Entry, abs: string): fs.Stats | undefined {
  if (entry.status !== 'completed' || entry.file_size === null || entry.completion_time === undefined) return undefined;
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(abs, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
  if (!st?.isFile() || st.size !== entry.file_size) return undefined;
  if (st.mtimeMs > entry.completion_time * 1000 + MTIME_SLACK_MS) return undefined;
  return st;
}

/**
 * A completed download with this sha256 at a `dest` other than `exceptDest`, whose file is still
 * there unchanged; undefined when there is none.
 */
export function findSameFile(entries: Iterable<Entry>, modelsDir: string, sha256: string, exceptDest: string): SameFile | undefined {
  const want = sha256.toLowerCase();
  const candidates: Array<{ entry: Entry; abs: string; st: fs.Stats }> = [];
  /** Per file (device and inode): the latest completion_time of an entry at one of its names. */
  const vouched = new Map<string, number>();
  for (const entry of entries) {
    if (entry.sha256 !== want || entry.status !== 'completed') continue;
    let abs: string;
    try {
      abs = resolveDest(modelsDir, entry.folder, entry.filename).abs;
    } catch {
      continue;
    }
    const st = unchangedSince(entry, abs);
    if (!st) continue;
    const file = `${st.dev}:${st.ino}`;
    vouched.set(file, Math.max(vouched.get(file) ?? 0, entry.completion_time!));
    if (entry.dest !== exceptDest) candidates.push({ entry, abs, st });
  }
  // A file put at its name after the entry completed (mv or cp -p of another file keep their
  // older mtime, not their ctime) is not the file the entry verified.
  const same = candidates.find(({ st }) => st.ctimeMs <= vouched.get(`${st.dev}:${st.ino}`)! * 1000 + MTIME_SLACK_MS);
  return same && { entry: same.entry, abs: same.abs, size: same.st.size };
}

export interface Offer {
  /** Where the request would put the file. */
  dest: Destination;
  /** The request's URL, credentials removed (kept on a linked entry). */
  url: string;
  /** Make a hard link at `dest` (the request's `link: true`). */
  link: boolean;
  group?: GroupRef;
}

/**
 * The answer to a request for a file that is already at `same`: `already_exists` with `same_as`,
 * or with `link`, a hard link at the requested destination and a new `completed` entry for it
 * (in the store). A link that cannot be made (another file system: EXDEV) is a 409 that changes
 * nothing: the user asked not to spend the bytes, so none are spent without being asked again.
 */
export function offerSameFile(same: SameFile, offer: Offer, deps: { store: StatusStore; log: Logger }): AddResult {
  const d = offer.dest;
  if (!offer.link) return { outcome: 'already_exists', download: same.entry, same_as: same.entry.dest };
  let made: string | undefined;
  try {
    made = fs.mkdirSync(path.dirname(d.abs), { recursive: true });
    fs.linkSync(same.abs, d.abs);
  } catch (err) {
    // A refused request changes nothing: the folders made for the link go again, each only while
    // empty (another server of the fleet may have begun a file in one meanwhile).
    if (made) removeEmptyFolders(path.dirname(d.abs), made);
    throw linkError(err, same.entry.dest, d);
  }
  // The `.part` of an earlier attempt at this destination is of no use now that the file is whole.
  for (const side of [partPath(d.abs), metaPath(d.abs)]) {
    try {
      fs.rmSync(side, { force: true });
    } catch (err) {
      deps.log.warn(`${d.dest}: could not remove its old ${path.basename(side)}: ${(err as Error).message}`);
    }
  }
  const entry = createEntry({
    dest: d.dest,
    folder: d.folder,
    filename: d.filename,
    url: offer.url,
    status: 'completed',
    file_size: same.size,
    downloaded: same.size,
    completion_time: nowSeconds(),
    ...(same.entry.sha256 ? { sha256: same.entry.sha256 } : {}),
    ...(offer.group ? { group: offer.group } : {}),
  });
  deps.store.put(entry);
  deps.log.info(`${d.dest}: linked to ${same.entry.dest} (same sha256), nothing downloaded`);
  return { outcome: 'already_exists', download: entry, same_as: same.entry.dest, linked: true };
}

/** Removes `folder` and its parents up to `top` (made for a link), bottom-up, stopping at the first one not empty. */
function removeEmptyFolders(folder: string, top: string): void {
  for (let dir = folder; ; dir = path.dirname(dir)) {
    try {
      fs.rmdirSync(dir);
    } catch {
      return; // not empty (or gone): it and the folders above it stay
    }
    if (dir === top || path.dirname(dir) === dir) return;
  }
}

/** Why a hard link could not be made, in the user's terms (destinations, never the server's paths). */
function linkError(err: unknown, sameAs: string, d: Destination): AppError {
  const code = errnoOf(err) ?? 'EIO';
  const second = 'to download a second copy instead, ask again with `overwrite: true`';
  let why: string;
  switch (code) {
    case 'EXDEV':
      why = `${sameAs} is on another file system than ${d.folder}, and a hard link cannot cross file systems`;
      break;
    case 'EMLINK':
      why = `${sameAs} already has as many hard links as its file system allows`;
      break;
    case 'EPERM':
      why = `the file system of ${d.folder} does not allow a hard link there (EPERM)`;
      break;
    case 'EEXIST':
      why = `something is already at ${d.dest} (a file made meanwhile, or a link to nothing)`;
      break;
    default:
      why = `${code}${typeof (err as NodeJS.ErrnoException).syscall === 'string' ? ` (${(err as NodeJS.ErrnoException).syscall})` : ''}`;
  }
  return new AppError(code, `Cannot link ${d.dest} to ${sameAs}, the same file (sha256): ${why}; ${second}`, { status: 409, cause: err });
}
