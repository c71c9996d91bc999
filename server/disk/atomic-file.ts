/**
 * Atomic writes of the service's side files (the segment map beside a `.part`) that never follow a
 * symbolic link. write-file-atomic resolves links first, so a `<dest>.part.json` planted as a link
 * to a file outside MODELS_DIR would be written through. Here the temp file is created with
 * O_EXCL | O_NOFOLLOW (a planted temp name fails and another is tried) and renamed over the target:
 * rename(2) replaces a link itself, never what it points to.
 */
import crypto from 'node:crypto';
import { constants } from 'node:fs';
import fs from 'node:fs/promises';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY } = constants;

/** Writes `data` to `file` atomically (temp file, fsync, rename), links not followed. */
export async function writeFileNoFollow(file: string, data: string | Buffer): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const temp = `${file}.${crypto.randomBytes(6).toString('hex')}`;
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 5) continue;
      throw err;
    }
    try {
      await handle.writeFile(data);
      await handle.sync();
      await handle.close();
      await fs.rename(temp, file);
      return;
    } catch (err) {
      await handle.close().catch(() => undefined);
      await fs.rm(temp, { force: true });
      throw err;
    }
  }
}

/** Reads `file` as text, refusing (ELOOP) when it is a symbolic link. */
export async function readFileNoFollow(file: string): Promise<string> {
  const handle = await fs.open(file, O_RDONLY | O_NOFOLLOW);
  try {
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
