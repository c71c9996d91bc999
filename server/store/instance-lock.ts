import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AppError } from '../errors';
import type { Logger } from '../logger';

/**
 * One server per status file. Two servers on one file both rewrite it (each overwriting the
 * other's downloads), and the second's start-up removes the temp files of the first's writes in
 * flight. So a server first creates `<status file>.lock` exclusively (`wx`: O_CREAT|O_EXCL, atomic
 * on a local filesystem), holding its pid and start time, and removes it on close.
 *
 * A lock outlives a kill -9, a crash or a power cut; it is taken over (with a log line) when the
 * process it names is gone. "Gone" has to survive pid reuse:
 * - a lock naming our own pid that this process does not hold was left by an earlier process that
 *   had the same pid (a container restarted: its server is pid 1 or 7 again every time);
 * - on Linux, a live process with the lock's pid but another start time (`/proc/<pid>/stat`) is
 *   someone else who got the pid later.
 * Pids mean nothing across hosts or pid namespaces: two containers sharing one volume are not kept
 * apart by this (each sees the other's pid as gone, or as someone else).
 */

export interface LockHolder {
  pid: number;
  /** When the holding process started (ISO 8601). */
  started: string;
  /** Its start time in clock ticks after boot (`/proc/<pid>/stat`, field 22), where there is one. */
  proc_start?: string;
  host: string;
  /** Tells this acquisition from any other, so that release removes only our own lock. */
  nonce: string;
}

/** The lock is held by a running server. */
export class LockedError extends AppError {
  readonly holder: LockHolder;
  constructor(message: string, holder: LockHolder) {
    super('LOCKED', message);
    this.name = 'LockedError';
    this.holder = holder;
  }
}

export interface InstanceLock {
  readonly file: string;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): Promise<void>;
}

/**
 * The nonces of the locks this process holds or is taking (tests run several servers in one
 * process): a lock naming our pid with a nonce not in here is a leftover of an earlier process.
 * Added before the lock file is created, so a second server of this process starting at the same
 * moment cannot take the first's fresh lock for a leftover.
 */
const mine = new Set<string>();

/** The start time of process `pid` in clock ticks after boot, or undefined where /proc has none. */
function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so count from the last ')'.
    // Field 22 (starttime) is the 20th after it.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (!Number.isInteger(v.pid) || (v.pid as number) <= 0 || typeof v.started !== 'string') return undefined;
    return v as LockHolder;
  } catch {
    return undefined;
  }
}

/** Why the holder no longer runs, or undefined when it does. */
function whyGone(holder: LockHolder): string | undefined {
  if (holder.pid === process.pid) {
    return mine.has(holder.nonce) ? undefined : 'an earlier process with the same pid as this one (a restarted container)';
  }
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    // EPERM: it exists, under another user.
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return 'no longer running';
  }
  const now = procStart(holder.pid);
  if (holder.proc_start !== undefined && now !== undefined && now !== holder.proc_start) {
    return `no longer running (pid ${holder.pid} now belongs to a process started later)`;
  }
  return undefined;
}

const holderText = (h: LockHolder): string => `pid ${h.pid}${h.host && h.host !== os.hostname() ? ` on ${h.host}` : ''}, started ${h.started}`;

async function createExclusive(file: string, content: string): Promise<void> {
  const handle = await fs.open(file, 'wx', 0o600);
  try {
    await handle.writeFile(content);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.rm(file, { force: true });
    throw err;
  }
  await handle.close();
}

/**
 * Takes `file` (`<status file>.lock`) for this process, taking over a lock whose process is gone.
 * Throws LockedError when a running server holds it (`what` and `hint` make its message); other
 * errors (a read-only folder) are the filesystem's.
 */
export async function acquireLock(file: string, options: { log: Logger; what: string; hint: string }): Promise<InstanceLock> {
  const ownStart = procStart(process.pid);
  const me: LockHolder = {
    pid: process.pid,
    started: new Date(performance.timeOrigin).toISOString(),
    ...(ownStart !== undefined ? { proc_start: ownStart } : {}),
    host: os.hostname(),
    nonce: crypto.randomBytes(8).toString('hex'),
  };
  const content = `${JSON.stringify(me)}\n`;
  mine.add(me.nonce);
  let tookOver: string | undefined;
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
    for (let attempt = 0; ; attempt++) {
      try {
        await createExclusive(file, content);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 100) throw err;
      }
      let text: string;
      try {
        text = await fs.readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
        throw err;
      }
      const holder = parseHolder(text);
      let reason: string;
      if (!holder) {
        // Another server starting this instant has created it and not yet written it: wait for that.
        const age = await fs.stat(file).then((st) => Date.now() - st.mtimeMs, () => 0);
        if (age < 2000) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        reason = `it holds no pid (${JSON.stringify(text.slice(0, 60))})`;
      } else {
        const gone = whyGone(holder);
        if (gone === undefined) {
          throw new LockedError(`another Model Downloader (${holderText(holder)}) is using ${options.what}; ${options.hint}`, holder);
        }
        reason = `${holderText(holder)}: ${gone}`;
      }
      // Take it out of the way by renaming it to a name of our own, then look at what we moved:
      // reading it again and removing it by path are two steps, and another server starting at the
      // same time may have taken it over and written its own lock in between.
      const aside = `${file}.stale-${me.nonce}`;
      try {
        await fs.rename(file, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // another server moved it first
        throw err;
      }
      const moved = await fs.readFile(aside, 'utf8').catch(() => undefined);
      if (moved === text) tookOver = reason;
      // A lock we were not judging (the other server's fresh one): put it back, unless a newer one
      // took its place (link() never replaces), and look again.
      else await fs.link(aside, file).catch(() => undefined);
      await fs.rm(aside, { force: true });
    }
  } catch (err) {
    mine.delete(me.nonce);
    throw err;
  }
  if (tookOver !== undefined) options.log.warn(`took over the lock ${file} left by a server that is gone (${tookOver})`);

  let released = false;
  return {
    file,
    release: async () => {
      if (released) return;
      released = true;
      const now = await fs.readFile(file, 'utf8').catch(() => undefined);
      if (now === content) await fs.rm(file, { force: true });
      mine.delete(me.nonce);
    },
  };
}
