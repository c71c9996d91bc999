import crypto from 'node:crypto';
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors';
import { readFileNoFollow, writeFileNoFollow } from './atomic-file';
import { syncFolder, type FolderSync } from './folder-sync';

/**
 * What we know about a `.part` file, kept beside it as `<dest>.part.json` so a resume after a
 * restart can ask for the same version of the file (If-Range) and knows its source.
 */
export interface PartMeta {
  /** Source URL without credentials. */
  url: string;
  /**
   * The final file's name: a map describes the file it is named after. Adoption of an orphan
   * (a map with no entry) requires it, so only maps the service wrote are trusted.
   */
  name?: string;
  etag?: string;
  lastModified?: string;
  fileSize: number | null;
  /**
   * A segmented download's map: each range `[start, end)` has `done` bytes on disk from its start.
   * The `.part` then has its full size from the outset, so its length says nothing of progress.
   */
  segments?: Segment[];
}

export interface Segment {
  start: number;
  end: number;
  done: number;
}

export const partPath = (abs: string): string => `${abs}.part`;
export const metaPath = (abs: string): string => `${abs}.part.json`;

export async function readMeta(abs: string): Promise<PartMeta | undefined> {
  return (await readPart(abs)).meta;
}

/**
 * The `.part` (when it is a plain file: its size) and the map beside it, in one look: a download
 * that has neither costs one failed lstat, not three.
 */
export async function readPart(abs: string): Promise<{ part: Stats | undefined; meta: PartMeta | undefined }> {
  // A map describes its `.part`: with none beside it (a kill between the rename of a finished
  // download and the map's removal) it describes nothing, and a resume must not trust it.
  const part = await fs.lstat(partPath(abs)).catch(() => undefined);
  if (!part?.isFile()) return { part, meta: undefined };
  try {
    const data = JSON.parse(await readFileNoFollow(metaPath(abs))) as PartMeta;
    if (typeof data.url !== 'string') return { part, meta: undefined };
    if (data.name !== undefined && data.name !== path.basename(abs)) return { part, meta: undefined }; // a map of another file
    return { part, meta: data };
  } catch {
    return { part, meta: undefined };
  }
}

export async function writeMeta(abs: string, meta: PartMeta): Promise<void> {
  // Padded with spaces to whole 4 KiB pages: on a full disk the map is rewritten in place, within
  // the page(s) it already has, as its counts grow a digit.
  const json = JSON.stringify({ ...meta, name: path.basename(abs) });
  const text = `${json.padEnd(Math.ceil((json.length + 1) / 4096) * 4096 - 1, ' ')}\n`;
  try {
    await writeFileNoFollow(metaPath(abs), text);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err;
    // A full disk has no room for the temp file of an atomic write, but the map already there
    // has its block: rewrite it in place, so that a retry once there is room resumes every range
    // from the bytes that fitted instead of fetching them again.
    await rewriteInPlace(metaPath(abs), text).catch(() => {
      throw err;
    });
  }
}

/**
 * Overwrites an existing file with `text` in one positional write, padded with spaces (JSON allows
 * them) to the old length, so the file never holds a tail of its old self; never beyond it. A kill cannot split one
 * write; one torn by a power cut leaves a map that does not parse (read as no map: start over) or
 * that mixes older and newer counts, none of them beyond the bytes written before it.
 */
async function rewriteInPlace(file: string, text: string): Promise<void> {
  const handle = await fs.open(file, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
  try {
    const { size } = await handle.stat();
    const bytes = Buffer.from(text);
    // Growing it would need a block the full disk may not give: a short write would tear the only
    // map. Keep the old one whole instead (the retry refetches what it does not cover).
    if (bytes.length > size) throw Object.assign(new Error('the map outgrew its place'), { code: 'ENOSPC' });
    const data = bytes.length < size ? Buffer.concat([bytes.subarray(0, -1), Buffer.alloc(size - bytes.length, ' '), bytes.subarray(-1)]) : bytes;
    const { bytesWritten } = await handle.write(data, 0, data.length, 0);
    if (bytesWritten !== data.length) throw Object.assign(new Error('short write'), { code: 'EIO' });
  } finally {
    await handle.close();
  }
}

/** Bytes already in the `.part` file, 0 when there is none. */
export async function partSize(abs: string): Promise<number> {
  try {
    return (await fs.stat(partPath(abs))).size;
  } catch {
    return 0;
  }
}

/** Bytes of the file already on disk: the segment map's sum, or the `.part`'s length (0 when there is none); `read`: readPart's answer, when just asked. */
export async function bytesOnDisk(abs: string, read?: Awaited<ReturnType<typeof readPart>>): Promise<number> {
  const { part, meta } = read ?? (await readPart(abs));
  if (!part) return 0;
  if (meta?.segments) return meta.segments.reduce((sum, s) => sum + s.done, 0);
  return part.isFile() ? part.size : partSize(abs); // not a plain file: what partSize sees, as before
}

/** Removes a file that may not exist (one unlink, not rm's look first). */
export async function removeIfThere(file: string): Promise<void> {
  await fs.unlink(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** Removes the `.part` file and its metadata (cancel, or a download that must start over). */
export async function removePart(abs: string): Promise<void> {
  await fs.rm(partPath(abs), { force: true });
  await fs.rm(metaPath(abs), { force: true });
}

/** sha256 of a file, reporting progress; used when the bytes did not all arrive in order in one run. */
export async function hashFile(file: string, onProgress: (bytes: number) => void, signal?: AbortSignal): Promise<string> {
  const hash = crypto.createHash('sha256');
  const handle = await fs.open(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
    let position = 0;
    let lastReport = 0;
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
      if (Date.now() - lastReport > 250) {
        lastReport = Date.now();
        onProgress(position);
      }
    }
    onProgress(position);
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

export interface CommitOptions {
  /** Shares the folder's fsync with the other files renamed into it meanwhile. @default a sync of its own */
  folders?: FolderSync;
  /** There is no map beside the `.part` (the transfer never wrote one): none to remove. @default false */
  mapless?: boolean;
  /** The `.part` was fsynced after its last write (by the transfer, on its own handle). @default false */
  synced?: boolean;
}

/**
 * Makes the finished `.part` durable and moves it to its final name, replacing any old file: the
 * `.part` is synced before the rename (a power cut never leaves a short file under the final
 * name), and the folder after it; resolves only then, so the caller may say `completed`.
 */
export async function commitPart(abs: string, options: CommitOptions = {}): Promise<void> {
  if (!options.synced) {
    const handle = await fs.open(partPath(abs), 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  try {
    await fs.rename(partPath(abs), abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') {
      // A folder appeared at dest while the file downloaded (add() refuses one that was there):
      // leave it as it is, and keep the finished .part and its metadata, so retry just renames it.
      const name = path.basename(abs);
      throw new AppError('DEST_IS_DIRECTORY', `${name} is a folder now; the finished download is kept as ${name}.part: move the folder away and press retry`, { cause: err });
    }
    throw err;
  }
  // The map goes while the folder is synced: either way a resume finds no map beside no `.part`.
  const dir = path.dirname(abs);
  await Promise.all([options.mapless ? undefined : removeIfThere(metaPath(abs)), options.folders ? options.folders.sync(dir) : syncFolder(dir)]);
}
