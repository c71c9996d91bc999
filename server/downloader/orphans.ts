/**
 * Adoption of orphan `.part` files at start-up: a `.part` with its `.part.json` but no entry means
 * the status file was lost or set aside. Such a download is listed as `paused` (the user decides:
 * resume or cancel) rather than left unseen, gigabytes on disk.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger';
import { createEntry } from '../store/entry';
import type { StatusStore } from '../store/status-store';
import { resolveDest } from '../disk/paths';
import { bytesOnDisk, readMeta } from '../disk/part-file';

export async function adoptOrphans(o: { store: StatusStore; modelsDir: string; log: Logger }): Promise<void> {
  const found: string[] = [];
  const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
    let items: fs.Dirent[];
    try {
      items = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const item of items) {
      if (item.isDirectory() && depth < 4 && !item.name.startsWith('.')) await walk(path.join(dir, item.name), `${rel}${item.name}/`, depth + 1);
      else if (item.isFile() && item.name.endsWith('.part.json') && rel !== '') found.push(rel + item.name.slice(0, -'.part.json'.length));
    }
  };
  await walk(o.modelsDir, '', 0);
  for (const dest of found) {
    if (o.store.get(dest)) continue;
    const slash = dest.lastIndexOf('/');
    let abs: string;
    try {
      abs = resolveDest(o.modelsDir, dest.slice(0, slash), dest.slice(slash + 1)).abs;
    } catch {
      continue;
    }
    const meta = await readMeta(abs);
    if (!meta || !/^https?:/.test(meta.url)) continue;
    const downloaded = await bytesOnDisk(abs);
    o.store.put(
      createEntry({ dest, folder: dest.slice(0, slash), filename: dest.slice(slash + 1), url: meta.url, status: 'paused', file_size: meta.fileSize, downloaded }),
    );
    o.log.warn(`found a partial download of ${dest} (${downloaded} bytes) with no entry in the status file; listed it as paused: resume or cancel it`);
  }
}
