/**
 * Adoption of orphan `.part` files at start-up: a `.part` with its `.part.json` but no entry means
 * the status file was lost or set aside. Such a download is listed as `paused` (the user decides:
 * resume or cancel) rather than left unseen, gigabytes on disk. Only pairs the service wrote are
 * adopted (see below): a downloaded file that looks like a map must never become a phantom entry
 * whose cancel deletes it.
 *
 * The same walk removes the temp files of map writes a kill cut short (`<file>.part.json.<12 hex>`,
 * atomic-file.ts: written, synced, then renamed over the map; a kill before the rename leaves one
 * beside the model for good): those written before this process began, and in fleet mode, where
 * another server may be writing one this moment, only those untouched for a minute (a map write
 * takes milliseconds).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger';
import { createEntry } from '../store/entry';
import type { StatusStore } from '../store/status-store';
import { resolveDest } from '../disk/paths';
import { bytesOnDisk, metaPath, partPath, readMeta } from '../disk/part-file';

/** The name of a map write's temp file (atomic-file.ts: the map's name, a dot, 6 random bytes in hex). */
const MAP_TEMP = /\.part\.json\.[0-9a-f]{12}$/;
/** Fleet mode: a map temp older than this is no other server's write under way. */
const FLEET_TEMP_AGE_MS = 60_000;

export async function adoptOrphans(o: { store: StatusStore; modelsDir: string; log: Logger; claim?: (dest: string) => Promise<boolean> }): Promise<void> {
  const found: string[] = [];
  const temps: string[] = [];
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
      else if (item.isFile() && MAP_TEMP.test(item.name) && rel !== '') temps.push(rel + item.name);
    }
  };
  await walk(o.modelsDir, '', 0);
  // Written before this process began (a write of ours may run already: the API is open), or in fleet mode a minute ago.
  const before = o.claim ? Date.now() - FLEET_TEMP_AGE_MS : performance.timeOrigin;
  for (const rel of temps) {
    const file = path.join(o.modelsDir, rel);
    const st = await fs.promises.lstat(file).catch(() => undefined);
    if (!st?.isFile() || st.mtimeMs >= before) continue;
    await fs.promises.unlink(file).then(
      () => o.log.info(`removed ${rel}, the temp file of a segment map write cut short (the server was stopped during it)`),
      (err: Error) => o.log.warn(`could not remove ${rel}, the temp file of a cut-short map write: ${err.message}`),
    );
  }
  for (const dest of found) {
    if (o.store.get(dest)) continue;
    const slash = dest.lastIndexOf('/');
    let abs: string;
    try {
      abs = resolveDest(o.modelsDir, dest.slice(0, slash), dest.slice(slash + 1)).abs;
    } catch {
      continue;
    }
    // Only what the service wrote is trusted: a map that names its file (written since maps carry
    // their name; no destination may take a side file's name) beside a `.part` that is a plain file,
    // neither of them a link.
    const plain = async (p: string): Promise<boolean> => (await fs.promises.lstat(p).catch(() => undefined))?.isFile() ?? false;
    if (!(await plain(partPath(abs))) || !(await plain(metaPath(abs)))) continue;
    const meta = await readMeta(abs);
    if (!meta || meta.name !== path.basename(abs) || !/^https?:/.test(meta.url)) continue;
    const downloaded = await bytesOnDisk(abs);
    if (o.claim && !(await o.claim(dest))) continue; // fleet mode: another live server's download
    o.store.put(
      createEntry({ dest, folder: dest.slice(0, slash), filename: dest.slice(slash + 1), url: meta.url, status: 'paused', file_size: meta.fileSize, downloaded }),
    );
    o.log.warn(`found a partial download of ${dest} (${downloaded} bytes) with no entry in the status file; listed it as paused: resume or cancel it`);
  }
}
