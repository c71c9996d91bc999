/**
 * Folder fsyncs shared by the renames that asked for them (a group commit). A rename into a folder
 * survives a power cut once that folder is synced; a group of files finishing together in one
 * folder needs one such sync for all of them, not one each. A caller waits for a sync that *began
 * after it asked*: the one in flight may have started before its rename and so not cover it, so it
 * waits for the next, which every caller that asks meanwhile shares.
 */
import fs from 'node:fs/promises';

interface Folder {
  /** The sync in flight. */
  current: Promise<void> | undefined;
  /** The sync that begins when `current` ends, shared by those who asked after `current` began. */
  next: Promise<void> | undefined;
}

export class FolderSync {
  private readonly folders = new Map<string, Folder>();
  /** Folder syncs begun so far (for tests and logs). */
  syncs = 0;

  /**
   * Resolves once a sync of `dir` that began after this call has ended. Never rejects: some
   * filesystems refuse fsync on a folder, and the files' own data is already durable then.
   */
  sync(dir: string): Promise<void> {
    let f = this.folders.get(dir);
    if (!f) this.folders.set(dir, (f = { current: undefined, next: undefined }));
    if (f.next) return f.next;
    if (!f.current) return this.begin(dir, f);
    const folder = f;
    f.next = f.current.then(() => {
      folder.next = undefined;
      return this.begin(dir, folder);
    });
    return f.next;
  }

  private begin(dir: string, f: Folder): Promise<void> {
    this.syncs++;
    const run: Promise<void> = syncFolder(dir).finally(() => {
      if (f.current === run) f.current = undefined;
      if (!f.current && !f.next) this.folders.delete(dir);
    });
    f.current = run;
    return run;
  }
}

/** fsyncs a folder, so the renames into it survive a power cut; quietly does nothing where refused. */
export async function syncFolder(dir: string): Promise<void> {
  try {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the data itself is already durable.
  }
}
