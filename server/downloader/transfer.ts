/**
 * One attempt over one connection: the rest of the file after the bytes already in the `.part`
 * (Range, with If-Range), appended, with progress, stall detection and the hash while streaming.
 * Also what carries over between attempts (TransferState) and what every attempt is given.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors';
import { redactUrl } from '../net/url-policy';
import { metaPath, partPath, readMeta, removeIfThere, removePart, writeMeta, partSize, type PartMeta } from '../disk/part-file';
import { classifyFailure, diskError, failureFor, isStrongEtag, parseContentRange, refuseNonFile } from './response';
import type { Agent } from '../net/agent';
import { checkContentRange } from '../net/content-range';
import { openSource, type Expectations, type ResolvedSource } from './source';
import { WriteBehind } from '../disk/write-behind';
import { attemptAbort } from './attempt-abort';
import { guardFile } from '../disk/guarded-file';

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
  /** The Downloader's connections: its pool, per-host caps and sessions. */
  agent: Agent;
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
  /** Fleet mode: throws when this server may no longer write the files (see Job.guard). */
  guard?: () => void;
  /**
   * A transfer from byte 0 writes the map beside its `.part` (what a resume needs: the source and
   * its validators) this long after its headers, or when it ends short; a kill before then
   * fetches those bytes again. @default 250
   */
  mapAfterMs?: number;
  /** The caller has just seen that there is no `.part` (a job's first attempt): no need to look again. */
  noPart?: boolean;
}

/** A file up to this size, fetched from byte 0, writes its map only `mapAfterMs` in (or never, when whole by then). */
const DEFER_MAP_MAX_BYTES = 4 * 1024 * 1024;

export interface AttemptResult {
  /** Bytes in the finished `.part`. */
  size: number;
  /** The server's total, when it said. */
  total: number | null;
  /** No map beside the `.part` (a file whole before its map was due: see mapAfterMs). */
  mapless?: boolean;
  /** The `.part` was fsynced after its last byte. */
  synced?: boolean;
}

/**
 * One attempt at moving the rest of a file into its `.part`: asks for the bytes after those on
 * disk (Range, with If-Range so a changed file is never spliced onto an old one), and appends them.
 * Resolves when the `.part` holds the whole file; throws an AppError (retryable or not) otherwise.
 */
export async function attemptTransfer(o: AttemptOptions): Promise<AttemptResult> {
  const part = partPath(o.abs);
  const { url } = o.source;
  const storedUrl = redactUrl(url);
  let offset = o.noPart ? 0 : await partSize(o.abs);
  const meta = offset > 0 ? await readMeta(o.abs) : undefined;
  if (offset > 0 && (!meta || meta.url !== storedUrl || (meta.fileSize !== null && offset > meta.fileSize))) {
    // No map: a kill in the first moments of a transfer (see mapAfterMs), or not ours at all.
    o.log?.(`${path.basename(o.abs)}: the partial file ${meta ? 'does not belong to this source' : 'has no map beside it'}; starting over`);
    o.guard?.();
    await removePart(o.abs);
    offset = 0;
  }

  const headers: Record<string, string> = {};
  if (offset > 0) {
    headers.Range = `bytes=${offset}-`;
    const validator = isStrongEtag(meta?.etag) ? meta.etag : meta?.lastModified;
    if (validator) headers['If-Range'] = validator;
  }

  /**
   * A fresh start's map, while it waits to be written: `mapAfterMs` into the transfer, or when the
   * attempt ends short (a failure, a pause, a shutdown: the next attempt resumes from it). A file
   * whole before then never gets one; a kill before then leaves a `.part` without a map, fetched
   * again from its start.
   */
  let mapDue: PartMeta | undefined;
  let mapTimer: NodeJS.Timeout | undefined;
  let mapWrite: Promise<void> | undefined;
  const writeMapNow = (): Promise<void> => {
    clearTimeout(mapTimer);
    const map = mapDue;
    mapDue = undefined;
    if (map) {
      // A resume aid only: when it cannot be written, a resume starts over.
      mapWrite = (async () => {
        o.guard?.();
        await writeMeta(o.abs, map);
      })().catch((err: unknown) => o.log?.(`${path.basename(o.abs)}: could not write the map of the partial file: ${(err as Error).message}`));
    }
    return mapWrite ?? Promise.resolve();
  };

  // Our own signal: the caller's (pause, cancel, shutdown) or a stall aborts it.
  let lastData = Date.now();
  let reportIfChanged: (() => void) | undefined;
  const local = attemptAbort(o.signal, {
    stallMs: o.stallMs,
    poll: () => {
      reportIfChanged?.();
      return Date.now() - lastData > o.stallMs ? new AppError('STALLED', `no data arrived for ${Math.round(o.stallMs / 1000)} s`, { retryable: true }) : undefined;
    },
  });

  try {
    const res = await openSource(o.source, headers, local.signal, o.agent);
    const host = res.url.host;
    let total: number | null = null;
    /** A 206's last byte: the body is written no further, whatever follows it (a chunked body could run on). */
    let rangeEnd: number | undefined;
    const contentLength = res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : null;

    if (res.status === 206) {
      // The range must start where the .part ends, and its total must be the size the .part was
      // begun with: an honest 206 of a file that changed upstream (no ETag, or the same one) would
      // otherwise be appended to the old bytes.
      let range;
      try {
        range = checkContentRange(res.headers['content-range'], { start: offset, total: meta?.fileSize ?? null, contentLength: res.headers['content-length'] });
      } catch (err) {
        res.body.destroy();
        o.guard?.();
        await removePart(o.abs);
        throw new AppError((err as AppError).code, `${host}: ${(err as Error).message}; starting over`, { retryable: true, cause: err });
      }
      total = range.total;
      rangeEnd = range.end;
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
      o.guard?.();
      await removePart(o.abs);
      throw new AppError('RANGE_NOT_SATISFIABLE', `${host} could not serve the rest of the file; starting over`, { retryable: true });
    } else {
      res.body.destroy();
      throw failureFor(res, o.source);
    }

    await refuseNonFile(res, o.abs, o.source);
    const expected = o.source.inspect?.({ status: res.status, url: res.url, headers: res.headers, firstHeaders: res.firstHeaders });
    if (expected) o.state.expected = { ...o.state.expected, ...expected };

    o.guard?.();
    const map: PartMeta = {
      url: storedUrl,
      ...(res.headers.etag ? { etag: res.headers.etag } : {}),
      ...(res.headers['last-modified'] ? { lastModified: res.headers['last-modified'] } : {}),
      fileSize: total,
    };
    // Only a small file's map waits: a big one's is written before its first byte, so that a disk
    // that fills up (where no map could be written then) still leaves a `.part` a retry resumes.
    if (offset > 0 || total === null || total > DEFER_MAP_MAX_BYTES) {
      if (offset === 0) {
        await fsp.mkdir(path.dirname(o.abs), { recursive: true }).catch((err: unknown) => {
          throw diskError(err, o.abs);
        });
      }
      await writeMeta(o.abs, map).catch((err: unknown) => {
        throw diskError(err, o.abs);
      });
    } else {
      // From 0: a map already there describes other bytes (a kill between a rename and the map's
      // removal), and must not stay beside the new ones. The new one waits (see mapDue): for each
      // of a group's many small files its synced write cost more than the file.
      await removeIfThere(metaPath(o.abs)).catch((err: unknown) => {
        throw diskError(err, o.abs);
      });
      mapDue = map;
      mapTimer = setTimeout(() => void writeMapNow(), o.mapAfterMs ?? 250);
    }

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
    let reported = offset;
    o.guard?.(); // 'w' truncates
    const flags = offset > 0 ? 'r+' : 'w';
    const file = guardFile(
      await fsp
        .open(part, flags)
        .catch(async (err: unknown) => {
          // The folder is made when the first file needs it, not looked for before each file.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || flags !== 'w') throw err;
          await fsp.mkdir(path.dirname(o.abs), { recursive: true });
          return fsp.open(part, flags);
        })
        .catch((err: unknown) => {
          throw diskError(err, o.abs);
        }),
      o.guard,
    );
    const behind = new WriteBehind(file);
    let synced = false;
    try {
      let onDisk = 0;
      const pump = res.body.pump({
        file,
        position: offset,
        ...(rangeEnd !== undefined ? { end: () => rangeEnd! + 1 } : {}),
        ...(hash ? { hash } : {}),
        onData: () => {
          lastData = Date.now();
          if (lastData - lastReport >= o.progressIntervalMs) reportIfChanged!();
        },
        onWritten: (written) => {
          behind.wrote(written - onDisk);
          onDisk = written;
        },
      });
      // Reports the bytes on disk when they changed since the last report, so a burst followed by
      // silence still shows (progress is otherwise reported as bytes arrive).
      reportIfChanged = () => {
        if (offset + pump.written !== reported) {
          reported = offset + pump.written;
          lastReport = Date.now();
          o.onProgress(reported, total);
        }
      };
      try {
        // Whatever arrived before a failure is on disk when this settles: the next attempt resumes there.
        await pump.done;
      } finally {
        received = pump.received;
      }
      if (total === null || offset + received === total) {
        // Every byte is in: said now, so that the connection goes to the next download (run.ts)
        // while this one syncs and closes its file, not after (a small file's sync and close took
        // longer than its transfer).
        reportIfChanged!();
        // The whole file: synced now, on the handle already open, rather than opened again for it
        // before the rename (one file of a group costs two fewer trips to the disk's threads).
        await behind.settled();
        await file.sync();
        synced = true;
      }
    } finally {
      reportIfChanged = undefined;
      o.state.received += received;
      if (hash) o.state.hashedBytes += received;
      await behind.settled();
      await file.close();
    }
    const size = offset + received;
    if (size !== reported) o.onProgress(size, total); // the whole file was reported before its sync
    if (total !== null && size < total) {
      throw new AppError('INCOMPLETE', `${host} closed the connection after ${size} of ${total} bytes`, { retryable: true });
    }
    if (total !== null && size > total) {
      mapDue = undefined;
      o.guard?.();
      await removePart(o.abs);
      throw new AppError('SIZE_MISMATCH', `${host} sent ${size} bytes but announced ${total}`, { retryable: true });
    }
    clearTimeout(mapTimer);
    const mapless = mapDue !== undefined;
    mapDue = undefined;
    await mapWrite; // before the caller removes it with the `.part`'s rename
    return { size, total, ...(mapless ? { mapless } : {}), ...(synced ? { synced } : {}) };
  } catch (err) {
    // Ended short: the next attempt resumes from the bytes on disk, with their map.
    if (mapDue) await writeMapNow();
    else await mapWrite;
    if (o.signal.aborted) throw o.signal.reason ?? err;
    if (local.stalled) throw local.signal.reason;
    throw await classifyFailure(err, o.abs, url);
  } finally {
    // A response left unread (a failure between its headers and its body) gives back its connection.
    local.dispose({ abortUnread: true });
  }
}

