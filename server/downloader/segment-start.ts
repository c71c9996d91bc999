/**
 * Where an attempt over several connections starts: the segment map saved beside the `.part` when
 * it still describes this URL's file (a `.part` begun on one connection taken as its first range),
 * else a probe of the server (the size, the validator, whether ranges are served) and a fresh map
 * over a sparse `.part` of full size.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors';
import { redactUrl } from '../net/url-policy';
import { checkContentRange, type ContentRange } from '../net/content-range';
import { partPath, partSize, readMeta, removePart, writeMeta, type PartMeta } from '../disk/part-file';
import { classifyFailure, diskError, failureFor, refuseNonFile } from './response';
import { attemptAbort } from './attempt-abort';
import { openSource } from './source';
import { layOut, validMap } from './segment-map';
import type { SegmentedOptions } from './segments';

/** Tells the caller to fall back to one connection: the server does not serve ranges, or the size is unknown. */
export const NOT_SEGMENTABLE = Symbol('not segmentable');

/** The map an attempt starts from, with its file's size and its segments; its `.part` is there. */
export async function startingMap(o: SegmentedOptions): Promise<PartMeta | typeof NOT_SEGMENTABLE> {
  const storedUrl = redactUrl(o.source.url);
  await fsp.mkdir(path.dirname(o.abs), { recursive: true }).catch((err: unknown) => {
    throw diskError(err, o.abs);
  });

  let meta = await readMeta(o.abs);
  if (meta && meta.url === storedUrl && !meta.segments && meta.fileSize !== null) {
    // A .part begun on one connection (CONNECTIONS was 1, or it fell back): keep its bytes as the
    // first range; idle connections split the rest off it.
    const have = await partSize(o.abs);
    if (have > meta.fileSize) meta = undefined;
    else meta = { ...meta, segments: [{ start: 0, end: meta.fileSize, done: have }] };
  }
  if (meta && (meta.url !== storedUrl || !meta.segments || meta.fileSize === null || !validMap(meta.segments, meta.fileSize))) meta = undefined;
  if (!meta) {
    const fresh = await probe(o);
    if (fresh === NOT_SEGMENTABLE) return NOT_SEGMENTABLE;
    meta = fresh;
  }
  return meta;
}

/** Asks for the first byte to learn the size, the validator and whether ranges are served; lays out the `.part`. */
async function probe(o: SegmentedOptions): Promise<PartMeta | typeof NOT_SEGMENTABLE> {
  const { url } = o.source;
  const local = attemptAbort(o.signal, { stallMs: o.stallMs, deadline: () => new AppError('STALLED', `no answer for ${Math.round(o.stallMs / 1000)} s`, { retryable: true }) });
  try {
    const res = await openSource(o.source, { Range: 'bytes=0-0' }, local.signal, o.agent);
    if (res.status !== 206 && res.status !== 200) {
      res.body.destroy();
      throw failureFor(res, o.source);
    }
    await refuseNonFile(res, o.abs, o.source);
    res.body.destroy();
    let range: ContentRange | undefined;
    if (res.status === 206) {
      try {
        range = checkContentRange(res.headers['content-range'], { start: 0, end: 0, contentLength: res.headers['content-length'] });
      } catch (err) {
        // No range of this server is to be trusted: one connection, which asks for no range at first.
        o.log?.(`${path.basename(o.abs)}: ${res.url.host}: ${(err as Error).message}; one connection`);
      }
    }
    const total = range?.total ?? null;
    const minSegment = o.minSegmentBytes ?? 4 * 1024 * 1024;
    if (!range || total === null || total < 2 * minSegment) return NOT_SEGMENTABLE;
    const expected = o.source.inspect?.({ status: res.status, url: res.url, headers: res.headers, firstHeaders: res.firstHeaders });
    if (expected) o.state.expected = { ...o.state.expected, ...expected };
    const segments = layOut(total, o.connections, minSegment);
    const meta: PartMeta = {
      url: redactUrl(url),
      ...(res.headers.etag ? { etag: res.headers.etag } : {}),
      ...(res.headers['last-modified'] ? { lastModified: res.headers['last-modified'] } : {}),
      fileSize: total,
      segments,
    };
    o.guard?.();
    await removePart(o.abs);
    const handle = await fsp.open(partPath(o.abs), 'w');
    try {
      await handle.truncate(total); // sparse: positional writes fill it in
    } finally {
      await handle.close();
    }
    await writeMeta(o.abs, meta);
    return meta;
  } catch (err) {
    if (o.signal.aborted) throw o.signal.reason ?? err;
    throw await classifyFailure(local.signal.aborted ? local.signal.reason : err, o.abs, url);
  } finally {
    local.dispose();
  }
}
