/**
 * The fleet folder's layout and its small files: every write atomic (a temp file renamed into
 * place: a reader on another host sees the old file or the new one, never half of one) and never
 * through a link. No fsync: these files say what is true now and are rewritten within seconds;
 * close(2) on NFS flushes the data to the server anyway.
 *
 *   FLEET_DIR/
 *     instances/<name>.json       each server's published entries and heartbeat (instance.ts)
 *     instances/<name>.lock/      the name's lock, held for the server's life
 *     locks/<sha256 of dest>.lock/  one destination's lock, held while its download is unfinished
 *     commands/<name>/<id>.json   commands handed to that server (commands.ts)
 */
import crypto from 'node:crypto';
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** A server's name in the fleet (INSTANCE_NAME, config.ts); also the only names read from the folder. */
export const INSTANCE_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export interface FleetPaths {
  root: string;
  instances: string;
  locks: string;
  commands: string;
}

export function fleetPaths(root: string): FleetPaths {
  return { root, instances: path.join(root, 'instances'), locks: path.join(root, 'locks'), commands: path.join(root, 'commands') };
}

/**
 * The lock of a destination: named by the sha256 of its `dest`, so that no file name (a
 * `foo.lock` being downloaded, a name longer than the volume allows, case-insensitive volumes)
 * can collide with it, and MODELS_DIR gets no folder of ours beside each `.part`.
 */
export const destLockFile = (p: FleetPaths, dest: string): string => path.join(p.locks, crypto.createHash('sha256').update(dest).digest('hex'));

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/**
 * Writes `data` to `file` through a temp file in the same folder (`.<name>.<random>.tmp`, which no
 * reader takes for a file of its own) and a rename. Returns the file's mtime as the volume stored
 * it, with the local times just before the write and after the stat (for clock.ts).
 */
export async function writeAtomic(file: string, data: string): Promise<{ mtimeMs: number; t0: number; t1: number }> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  const t0 = Date.now();
  const handle = await fs.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
  try {
    await handle.writeFile(data);
    await handle.close();
    await fs.rename(temp, file);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.rm(temp, { force: true });
    throw err;
  }
  const { mtimeMs } = await fs.stat(file);
  return { mtimeMs, t0, t1: Date.now() };
}

/**
 * Reads a small file of another server, with its stat from the same open (on NFS, open(2)
 * revalidates the cached attributes: close-to-open consistency), skipping the read when `known`
 * says it has not changed. Undefined when the file is gone.
 */
export async function readIfChanged(
  file: string,
  known: { ino: number; size: number; mtimeMs: number } | undefined,
  maxBytes: number,
): Promise<{ ino: number; size: number; mtimeMs: number; text?: string } | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = await handle.stat();
    const id = { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    if (known && known.ino === id.ino && known.size === id.size && known.mtimeMs === id.mtimeMs) return id;
    if (!st.isFile() || st.size > maxBytes) return { ...id, text: '' };
    return { ...id, text: await handle.readFile('utf8') };
  } finally {
    await handle.close().catch(() => undefined);
  }
}
