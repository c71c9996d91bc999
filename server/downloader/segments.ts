/**
 * One attempt over several connections: the file in ranges fetched in parallel into a `.part` of
 * full size (a big file in pieces, lowest first), the segment map saved beside it after each sync,
 * idle connections stealing half of the biggest range left, the in-flight sha256 told how far the
 * written prefix reaches. Falls back (NOT_SEGMENTABLE) when the server serves no ranges or the size
 * is unknown. The map an attempt starts from (resumed, or probed and laid out) is segment-start.ts's;
 * which range a connection takes, and the map's other bookkeeping, segment-map.ts's.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { AppError } from '../errors';
import { checkContentRange, type ContentRange } from '../net/content-range';
import { partPath, removePart, writeMeta, type Segment } from '../disk/part-file';
import type { Pump } from '../net/raw-http';
import { classifyFailure, diskError, failureFor, isStrongEtag, parseContentRange, refuseNonFile } from './response';
import { retryDelay, type RetryPolicy } from './retry-delay';
import { WriteBehind } from '../disk/write-behind';
import type { PrefixHash } from '../disk/prefix-hash';
import { attemptAbort } from './attempt-abort';
import type { AttemptOptions, AttemptResult } from './transfer';
import { openSource } from './source';
import { guardFile } from '../disk/guarded-file';
import { bytesDone, claimRange, takenInPieces, writtenPrefix } from './segment-map';
import { NOT_SEGMENTABLE, startingMap } from './segment-start';

// Where the callers (run.ts) have always found it.
export { NOT_SEGMENTABLE };

export interface SegmentedOptions extends AttemptOptions {
  connections: number;
  /**
   * A segment is never split below this; a file of 16 times this per connection (64 MiB by
   * default) is taken in pieces, lowest first (see PIECES in segment-map.ts). @default 4 MiB
   */
  minSegmentBytes?: number;
  retry: RetryPolicy;
  /**
   * The `.part` is synced at least this often while bytes arrive (and every 64 MiB), and the
   * segment map saved after each sync, at most this often: a kill -9 re-fetches about this much
   * transfer time. @default 250
   */
  saveIntervalMs?: number;
  /** Hashes the written prefix of the `.part` as it grows (the sha256 while downloading), when a sha256 is expected. */
  hash?: PrefixHash;
  /** Use `hash` also when no sha256 is expected (the digest is then only recorded). */
  hashWithoutExpected?: boolean;
  /** Called with every range request made (for tests and logs). */
  onRange?: (from: number, to: number) => void;
}

interface Live {
  seg: Segment;
  /** When this connection last received a byte (or asked for one). */
  lastData: number;
  /** Waiting out a retry delay: not stalled, and its range stays its own. */
  waiting: boolean;
  /** The body being written: bytes it holds beyond `seg.done` are already taken. */
  pump?: Pump;
}

/**
 * A download over several connections: the file is split into ranges fetched in parallel and
 * written at their offsets into a `.part` of full size (a big file into pieces, see PIECES in
 * segment-map.ts). The segment map is saved beside it, so a kill -9 resumes every range where it
 * stopped. When a connection finishes its range it takes the next piece, else the larger half of
 * the biggest remaining range (work stealing), so the tail never crawls on one slow connection.
 * Each connection retries on its own.
 */
export async function attemptSegmented(o: SegmentedOptions): Promise<AttemptResult | typeof NOT_SEGMENTABLE> {
  const { url } = o.source;
  const minSegment = o.minSegmentBytes ?? 4 * 1024 * 1024;
  const meta = await startingMap(o);
  if (meta === NOT_SEGMENTABLE) return NOT_SEGMENTABLE;
  const total = meta.fileSize!;
  const segments = meta.segments!.sort((a, b) => a.start - b.start);
  const inPieces = takenInPieces(total, o.connections, minSegment);
  const validator = isStrongEtag(meta.etag) ? meta.etag : meta.lastModified;

  const file = guardFile(
    await fsp.open(partPath(o.abs), 'r+').catch((err: unknown) => {
      throw diskError(err, o.abs);
    }),
    o.guard,
  );
  const copy = (): Segment[] => segments.map((s) => ({ ...s }));
  /** Bytes from offset 0 that are written. */
  const prefix = (): number => writtenPrefix(segments);
  const hash = o.wantHash || o.state.expected.sha256 !== undefined || o.hashWithoutExpected ? o.hash : undefined;
  await hash?.follow(partPath(o.abs), file, prefix());
  // The map on disk claims only bytes the disk has: the counts as of the last sync of the .part.
  // Saved from live counts, a map could claim bytes still in the page cache, and after a power cut
  // a resume would skip a hole of zeros (a kill -9 loses none: the page cache outlives a process).
  // Each sync is followed by a save of the map (at most every saveIntervalMs), and a slow link is
  // synced every saveIntervalMs too: a kill -9 loses about that much transfer. On a fast link the
  // syncs every 64 MiB come first, and the map's saves stay spaced.
  const saveEvery = o.saveIntervalMs ?? 250;
  let durable = copy();
  let saved: Segment[] | undefined;
  let lastSave = 0;
  let saveTimer: NodeJS.Timeout | undefined;
  let over = false;
  const saveSoon = (): void => {
    if (saveTimer || over) return;
    saveTimer = setTimeout(() => {
      saveTimer = undefined;
      lastSave = Date.now();
      void save();
    }, Math.max(0, lastSave + saveEvery - Date.now()));
  };
  const behind = new WriteBehind(file, {
    maxAgeMs: saveEvery,
    onSync: () => {
      const counts = copy();
      return () => {
        durable = counts;
        saveSoon();
      };
    },
  });
  const live = new Set<Live>();
  const doneBytes = (): number => bytesDone(segments);
  const began = Date.now();
  const doneAtStart = doneBytes();
  /** Seconds from a range request to its answer's headers (redirects included), smoothed. */
  let latency = 0;
  let saving: Promise<void> = Promise.resolve();
  /** Saves the map as of the last sync; `final` (the transfer is over) syncs now and saves all. */
  const save = (final = false): Promise<void> =>
    (saving = saving
      .then(async () => {
        if (final) {
          const counts = copy();
          await file.datasync();
          durable = counts;
        }
        if (durable === saved) return;
        o.guard?.(); // a server that lost its hold saves no map: another one owns the files now
        await writeMeta(o.abs, { ...meta, segments: durable });
        saved = durable;
      })
      .catch(() => undefined));
  // Our own signal: the caller's (pause, cancel, shutdown), a connection's stall or its final failure aborts it.
  const local = attemptAbort(o.signal, {
    stallMs: o.stallMs,
    poll: () => {
      const now = Date.now();
      const stalled = [...live].some((l) => !l.waiting && now - l.lastData > o.stallMs);
      return stalled ? new AppError('STALLED', `no data arrived on a connection for ${Math.round(o.stallMs / 1000)} s`, { retryable: true }) : undefined;
    },
  });
  let lastReport = 0;
  const report = (force = false): void => {
    const now = Date.now();
    if (force || now - lastReport >= o.progressIntervalMs) {
      lastReport = now;
      o.onProgress(doneBytes(), total);
    }
  };

  /** The next range for a free connection (see claimRange): a connection holds its range with the bytes its body holds unwritten. */
  const claim = (): Segment | undefined =>
    claimRange(segments, new Map([...live].map((l) => [l.seg, l.pump?.pending ?? 0])), {
      connections: o.connections,
      minSegment,
      inPieces,
      minPiece: minPiece(),
      onSplit: (range, stolen) => o.log?.(`${path.basename(o.abs)}: split range ${range.start}-${stolen.end - 1} at ${stolen.start} for an idle connection`),
    });
  /** The smallest piece: a minimum segment, or four request latencies' worth of one connection's bytes. */
  const minPiece = (): number => {
    const seconds = (Date.now() - began) / 1000;
    const perConnection = seconds > 0 ? (doneBytes() - doneAtStart) / seconds / o.connections : 0;
    return Math.max(minSegment, Math.ceil(4 * latency * perConnection));
  };

  const fetchSegment = async (l: Live): Promise<void> => {
    const seg = l.seg;
    const from = seg.start + seg.done;
    // What is asked: the range may shrink (stolen from) before its answer comes, never the request.
    const to = seg.end - 1;
    l.lastData = Date.now();
    o.onRange?.(from, to);
    const headers: Record<string, string> = { Range: `bytes=${from}-${to}` };
    if (validator) headers['If-Range'] = validator;
    const asked = Date.now();
    const res = await openSource(o.source, headers, local.signal, o.agent);
    latency = latency === 0 ? (Date.now() - asked) / 1000 : 0.7 * latency + (0.3 * (Date.now() - asked)) / 1000;
    if (res.status === 200) {
      res.body.destroy();
      // If-Range failed: the file changed upstream. Never splice two versions: start over.
      o.guard?.();
      await removePart(o.abs);
      throw new AppError('CHANGED_UPSTREAM', `${res.url.host} sent the whole file instead of a range: it changed since the download began; starting over`, { retryable: true });
    }
    if (res.status !== 206) {
      res.body.destroy();
      throw failureFor(res, o.source);
    }
    let range: ContentRange;
    try {
      // The rules of every range appended to stored bytes (the one-connection resume's too): it
      // starts where asked, ends no later, its Content-Length is its length, and its total is the
      // size every range of this download had.
      range = checkContentRange(res.headers['content-range'], { start: from, end: to, total, contentLength: res.headers['content-length'] });
    } catch (err) {
      res.body.destroy();
      const said = parseContentRange(res.headers['content-range'])?.total;
      if (typeof said === 'number' && said !== total) {
        // Another size: the file changed upstream, and If-Range could not tell (no ETag, or the
        // same one). Never splice two versions: start over, as the one-connection resume does.
        o.guard?.();
        await removePart(o.abs);
        throw new AppError('CHANGED_UPSTREAM', `${res.url.host}: ${(err as Error).message}; starting over`, { retryable: true, cause: err });
      }
      // Not a byte of this answer is written; the range is asked again (and the attempt fails when it keeps coming).
      throw new AppError((err as AppError).code, `${res.url.host}: ${(err as Error).message}`, { retryable: true, cause: err });
    }
    await refuseNonFile(res, o.abs, o.source);
    const base = seg.done;
    const pump = res.body.pump({
      file,
      position: from,
      // The range may shrink (stolen from) while it is read: stop there. Nor past the end the
      // answer said (a shorter range is allowed): a body without Content-Length could run on.
      end: () => Math.min(seg.end, range.end + 1),
      onData: () => {
        l.lastData = Date.now();
        report();
      },
      onWritten: (written) => {
        behind.wrote(base + written - seg.done);
        seg.done = base + written;
        hash?.advance(prefix());
      },
    });
    l.pump = pump;
    try {
      await pump.done;
    } finally {
      seg.done = base + pump.written;
    }
  };

  const worker = async (): Promise<void> => {
    for (let seg = claim(); seg; seg = claim()) {
      const l: Live = { seg, lastData: Date.now(), waiting: false };
      live.add(l);
      let failures = 0;
      try {
        while (seg.done < seg.end - seg.start) {
          const before = seg.done;
          try {
            await fetchSegment(l);
          } catch (err) {
            if (local.signal.aborted) throw local.signal.reason;
            const e = await classifyFailure(err, o.abs, url);
            failures = seg.done > before ? 1 : failures + 1;
            const wait = e.code === 'CHANGED_UPSTREAM' ? undefined : retryDelay({ failures, retryable: e.retryable, ...(e.retryAfter === undefined ? {} : { retryAfter: e.retryAfter }) }, o.retry);
            if (wait === undefined) {
              local.abort(e); // the other connections stop too: this attempt has failed
              throw e;
            }
            o.log?.(`${path.basename(o.abs)}: range ${seg.start + seg.done}-${seg.end - 1}: ${e.message}; retrying in ${(wait / 1000).toFixed(1)} s`);
            l.waiting = true;
            await delay(wait, undefined, { signal: local.signal }); // a pause or shutdown must not wait out a backoff
            l.waiting = false;
          }
        }
      } finally {
        live.delete(l);
      }
    }
  };

  try {
    o.onStart(doneBytes(), total);
    const workers = Array.from({ length: o.connections }, () => worker());
    const results = await Promise.allSettled(workers);
    if (local.signal.aborted) throw local.signal.reason; // the first failure (or a stall) is the reason
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    report(true);
    if (doneBytes() !== total) throw new AppError('INCOMPLETE', `the segments hold ${doneBytes()} of ${total} bytes`, { retryable: true });
    hash?.ended(total);
    return { size: total, total };
  } catch (err) {
    if (o.signal.aborted) throw o.signal.reason ?? err;
    throw await classifyFailure(err, o.abs, url);
  } finally {
    over = true;
    clearTimeout(saveTimer);
    local.dispose({ abortUnread: true });
    await behind.settled();
    if (await fsp.access(partPath(o.abs)).then(() => true, () => false)) await save(true);
    await saving;
    await file.close().catch(() => undefined);
  }
}
