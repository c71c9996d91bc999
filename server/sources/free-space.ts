/**
 * Free space before a download starts: a Civitai file whose API gives its size, and a group (the
 * files of a Hugging Face folder or repository, the missing models of a workflow) whose listing
 * or plan gives their sizes. What does not fit answers `507 INSUFFICIENT_SPACE` before anything
 * starts, rather than a disk-full error half-way through a 30 GB group.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AppError } from '../errors';
import { partPath } from '../disk/part-file';
import { resolveDest } from '../disk/paths';
import { findSameFile } from '../downloader/known-files';
import { isActive, isFinished } from '../protocol/status';
import type { Entry } from '../protocol/wire';
import type { GroupItem, RoomCheck } from './groups';

/** What is at `p`; undefined when nothing is, or when a file stands where a folder of its path should (ENOTDIR). */
function statOf(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** The folder itself, or its nearest parent that exists (a group's subfolders are made later). */
function nearestDir(dir: string): string | undefined {
  for (let d = dir; ; ) {
    if (statOf(d)?.isDirectory()) return d;
    const parent = path.dirname(d);
    if (parent === d) return undefined;
    d = parent;
  }
}

/** Bytes free for an unprivileged writer on the disk holding `dir` (or its nearest existing parent). */
export function freeBytes(dir: string): number | undefined {
  const at = nearestDir(dir);
  if (at === undefined) return undefined;
  try {
    const s = fs.statfsSync(at);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** `812 KB (831,488 bytes)`: a size people read, and the exact count. */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const shown = i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
  return i === 0 ? shown : `${shown} (${n.toLocaleString('en-US')} bytes)`;
}

/** Bytes of the file already in its `.part` (allocated ones: a segmented `.part` is sparse). */
function bytesInPart(abs: string, size: number): number {
  const st = statOf(partPath(abs));
  if (!st?.isFile() || st.size > size) return 0; // none, or a different file: it starts over
  return Math.min(st.size, st.blocks * 512);
}

export interface RoomDeps {
  modelsDir: string;
  /**
   * The downloads (the StatusStore; in fleet mode every server's, the volume being shared): those
   * under way have their remaining bytes promised on their disk, and a file of the group among them
   * is not counted twice; a completed one with the same sha256 needs no bytes.
   */
  store: { all(): Entry[]; get(dest: string): Entry | undefined };
}

interface Disk {
  need: number;
  files: number;
  free: number;
  /** Bytes the downloads under way on it (queued to verifying) have still to write. */
  promised: number;
  folder: string;
}

/** The device of the folder `abs` is to be written in (its nearest existing parent's), with that folder. */
function diskOf(abs: string): { dev: number; dir: string } | undefined {
  const dir = nearestDir(path.dirname(abs));
  const dev = dir === undefined ? undefined : statOf(dir)?.dev;
  return dev === undefined || dir === undefined ? undefined : { dev, dir };
}

/**
 * The check a group makes before it starts (see groups.ts): the known sizes of its files, less
 * what is already on disk — a file at its destination, the same file (by sha256) completed
 * elsewhere, bytes already in a `.part`, a destination already being downloaded — summed per disk
 * (a folder may be another mount) against that disk's free space less what the downloads under
 * way there have still to write. Files of unknown size count 0.
 */
export function roomCheck(deps: RoomDeps): RoomCheck {
  return (what, items) => {
    const entries = deps.store.all();
    const disks = new Map<number, Disk>();
    for (const { req, size } of items) {
      if (size === undefined || size <= 0) continue;
      let d;
      try {
        d = resolveDest(deps.modelsDir, req.folder, req.filename);
      } catch {
        continue; // refused when it is started: skipped, with its reason
      }
      const entry = deps.store.get(d.dest);
      if (entry && !isFinished(entry.status)) continue; // its bytes are under way already
      if (!req.overwrite) {
        if (statOf(d.abs)?.isFile()) continue;
        if (req.sha256 && findSameFile(entries, deps.modelsDir, req.sha256, d.dest)) continue;
      }
      const need = size - bytesInPart(d.abs, size);
      if (need <= 0) continue;
      const at = diskOf(d.abs);
      if (at === undefined) continue;
      const disk = disks.get(at.dev) ?? { need: 0, files: 0, free: Infinity, promised: 0, folder: d.folder.split('/')[0]! };
      disk.need += need;
      disk.files++;
      disk.free = Math.min(disk.free, freeBytes(at.dir) ?? Infinity);
      disks.set(at.dev, disk);
    }
    if (disks.size === 0) return;
    // What the downloads under way will still write: free now is not free for the group. Once per
    // dest (a silent server's last list may still show a download another has taken over).
    const counted = new Set<string>();
    for (const e of entries) {
      if (!isActive(e.status) || e.file_size === null || e.file_size <= e.downloaded || counted.has(e.dest)) continue;
      counted.add(e.dest);
      let abs: string;
      try {
        abs = resolveDest(deps.modelsDir, e.folder, e.filename).abs;
      } catch {
        continue;
      }
      const disk = disks.get(diskOf(abs)?.dev ?? -1);
      if (disk) disk.promised += e.file_size - e.downloaded;
    }
    for (const disk of disks.values()) {
      const free = Math.max(0, disk.free - disk.promised);
      if (disk.need > free) {
        // One file asked for alone (a Civitai file) needs no count.
        const files = items.length === 1 ? '' : disk.files === 1 ? ' for its 1 file' : ` for its ${disk.files} files`;
        const promised = disk.promised > 0 ? `, ${formatBytes(disk.promised)} of it still to be written by the downloads under way` : '';
        throw new AppError(
          'INSUFFICIENT_SPACE',
          `${what} needs ${formatBytes(disk.need)} more${files} in ${disk.folder}, and that disk has ${formatBytes(disk.free)} free${promised}; free some space first (nothing was started)`,
          { status: 507 },
        );
      }
    }
  };
}
