/**
 * Locks on the shared volume: proper-lockfile's `mkdir` locks (atomic on NFSv3+, CephFS, MooseFS),
 * kept fresh by touching their mtime every `updateMs`, taken over once not touched for `staleMs`.
 * proper-lockfile does the creating, refreshing, taking over and noticing a lock taken from us
 * (`onCompromised`); it is given a file system of ours (`volumeFs`) that adds what fleet mode needs:
 *
 * - **The volume's clock.** proper-lockfile stamps and judges mtimes with the local clock; across
 *   hosts that is wrong by their skew. Ours shifts every stamp by the volume clock's offset
 *   (clock.ts) and reads every mtime back through it, so "older than staleMs" means on the
 *   volume's clock. The mtime the volume actually stored (read back with stat after each touch)
 *   is what "still ours" is compared against, so coarse mtimes (whole seconds) do not look like a
 *   lock taken over.
 * - **Never removing a lock that is neither ours nor stale.** proper-lockfile takes over a stale
 *   lock by removing it and making its own; two servers doing so at once can remove each other's
 *   fresh lock. Ours looks again right before removing, and leaves a fresh lock of another server
 *   alone (the caller then finds it held); release after a takeover removes nothing either.
 * - **A lease.** A hold is safe for writing only until `staleMs - marginMs` after its last touch
 *   began (measured on this process's monotonic clock, which a SIGSTOP does not stop): past
 *   that, another server may take it over at any moment. `valid()` says so synchronously, and a
 *   hold whose lease ran out is lost for good (released, taken again from scratch), never
 *   quietly renewed. A new hold is confirmed (still ours `confirmMs` after it was made) before
 *   it is handed out.
 *
 * proper-lockfile is loaded on first use: it installs exit handlers (signal-exit) when loaded, and
 * a lone server must not get them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type { VolumeClock } from './clock';

type Lockfile = typeof import('proper-lockfile');
let loaded: Lockfile | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lockfile = (): Lockfile => (loaded ??= require('proper-lockfile') as Lockfile);

export interface LockTimings {
  /** A lock not touched for this long may be taken over. */
  staleMs: number;
  /** How often a held lock is touched. */
  updateMs: number;
  /** The lease ends this long before the lock could be taken over. */
  marginMs: number;
  /** A new hold must still be ours this long after it was made. @default 100 */
  confirmMs?: number;
}

/** Timings from FLEET_STALE_SECONDS: touched every stale/6 (1–5 s), the lease ending stale/6 (≥ 0.5 s) early. */
export function lockTimings(staleSeconds: number): LockTimings {
  const staleMs = staleSeconds * 1000;
  return { staleMs, updateMs: Math.min(5000, Math.max(1000, staleMs / 6)), marginMs: Math.max(500, staleMs / 6) };
}

/** A lock this server holds. */
export interface HeldLock {
  /** The lock's folder. */
  readonly dir: string;
  /** Lost: taken over, removed, or its lease ran out. Final. */
  readonly lost: boolean;
  /** Whether writing under this lock is safe now (see the lease above). Synchronous; a lapsed lease makes the hold lost. */
  valid(): boolean;
  /** Calls `listener` once, when the hold is lost, with why. Returns an unsubscribe. */
  onLost(listener: (why: string) => void): () => void;
  /** Lets the lock go (removes it only while it is ours). Idempotent. */
  release(): Promise<void>;
}

/** What this process knows of one lock folder. */
interface DirState {
  /** The mtime (ms, as the volume stores it) this server last gave the lock: "still ours" means stat says so. */
  ours?: number;
  /** The last mtime read, and the local time it was read as: one stored mtime always reads the same. */
  seen?: { raw: number; local: number };
}

class Hold implements HeldLock {
  lost = false;
  leaseUntil: number;
  unlock: (() => Promise<void>) | undefined;
  released: Promise<void> | undefined;
  private readonly listeners = new Set<(why: string) => void>();

  constructor(
    readonly dir: string,
    private readonly space: LockSpace,
    readonly lifetime: boolean,
    issued: number,
  ) {
    this.leaseUntil = issued + space.t.staleMs - space.t.marginMs;
  }

  valid(): boolean {
    if (this.lost) return false;
    if (performance.now() < this.leaseUntil) return true;
    if (!this.lifetime) this.space.lose(this, 'its lock was not refreshed in time (the server was stopped or cut off)');
    return false;
  }

  onLost(listener: (why: string) => void): () => void {
    if (this.lost) {
      listener('lost');
      return () => undefined;
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  lose(why: string): void {
    if (this.lost) return;
    this.lost = true;
    for (const l of [...this.listeners]) l(why);
    this.listeners.clear();
  }

  release(): Promise<void> {
    return (this.released ??= this.space.release(this));
  }
}

/**
 * A lock's stamp (seconds, for utimes) for the volume time `nowMs`: the millisecond plus a random
 * fraction of it in steps of 10 µs (1–99 steps, never a whole millisecond), so that two takers
 * stamping in the same millisecond leave different mtimes on a volume that keeps them finely.
 */
export function lockStamp(nowMs: number): number {
  return (Math.floor(nowMs) + crypto.randomInt(1, 100) / 100) / 1000;
}

/**
 * Whether an mtime read back right after stamping `stamp` (lockStamp) is that stamp, as the volume
 * stores it: the same to within 2 µs (a volume that keeps micro- or nanoseconds; a double's
 * rounding), or cut to the whole millisecond or second (a coarse volume, which keeps no fraction).
 * Another taker's stamp in the same millisecond differs by 10 µs or more on a fine volume, and
 * has a fraction there, so it is never taken for ours. (On a coarse volume two takers in one
 * millisecond or second cannot be told apart by their stamps; see docs/reference.md.)
 */
export function readBackIsOurs(stamp: number, mtimeMs: number): boolean {
  const want = stamp * 1000;
  if (Math.abs(mtimeMs - want) < 0.002) return true;
  if (!Number.isInteger(mtimeMs)) return false; // a fraction: a fine volume, and another stamp
  return mtimeMs === Math.floor(want) || mtimeMs === Math.floor(want / 1000) * 1000;
}

/** The locks of one fleet folder, and the file system they are made with (see the top). */
export class LockSpace {
  private readonly dirs = new Map<string, DirState>();
  private readonly holds = new Map<string, Hold>();
  /** Releases in flight, by folder: a new hold of the same folder waits for them. */
  private readonly releasing = new Map<string, Promise<void>>();
  readonly t: Required<LockTimings>;

  constructor(
    private readonly clock: VolumeClock,
    timings: LockTimings,
  ) {
    this.t = { confirmMs: 100, ...timings };
  }

  /**
   * Takes `${file}.lock`. Undefined when a fresh lock of another holder is there (or another
   * server made it in the same moment); throws the file system's error when it cannot be made.
   * `lifetime`: a lock held for the server's life (its name, its status file), whose lease is not
   * enforced.
   */
  async acquire(file: string, options: { lifetime?: boolean } = {}): Promise<HeldLock | undefined> {
    const dir = `${file}.lock`;
    if (this.holds.has(dir)) throw new Error(`${dir} is already held by this process`);
    await this.releasing.get(dir);
    const hold = new Hold(dir, this, options.lifetime ?? false, performance.now());
    this.holds.set(dir, hold);
    try {
      hold.unlock = await lockfile().lock(file, {
        realpath: false,
        stale: this.t.staleMs,
        update: this.t.updateMs,
        retries: 0,
        fs: this.volumeFs,
        onCompromised: (err: Error) => this.lose(hold, `its lock was taken over or removed (${err.message})`),
      });
    } catch (err) {
      this.holds.delete(dir);
      this.forget(dir);
      if ((err as NodeJS.ErrnoException).code === 'ELOCKED') return undefined;
      // Several servers taking one stale lock at once: the folder one of them made was removed by
      // another before proper-lockfile's first touch of it (utime ENOENT). Contested: not ours.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (err as NodeJS.ErrnoException).path === dir) return undefined;
      throw err;
    }
    try {
      // proper-lockfile touched it (its mtime probe), or, once the precision is known, only read
      // it: then the mtime the volume gave the new folder is ours.
      if (this.state(dir).ours === undefined) this.state(dir).ours = (await fs.promises.stat(dir)).mtimeMs;
      await delay(this.t.confirmMs);
      if (!hold.lost && (await this.isOurs(dir))) return hold;
    } catch {
      // removed meanwhile: not ours
    }
    this.lose(hold, 'another server took the lock in the same moment');
    return undefined;
  }

  /** Whether a lock that is not stale is at `${file}.lock` (ours included). */
  async fresh(file: string): Promise<boolean> {
    const st = await fs.promises.stat(`${file}.lock`).catch(() => undefined);
    return st !== undefined && st.mtimeMs >= this.clock.now() - this.t.staleMs;
  }

  /** Every hold of this process let go (at close). */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.holds.values()].map((h) => h.release()));
  }

  /** The hold is lost: listeners told, the lock let go (unless proper-lockfile already dropped it). */
  lose(hold: Hold, why: string): void {
    if (hold.lost) return;
    hold.lose(why);
    void hold.release();
  }

  release(hold: Hold): Promise<void> {
    const done = (async () => {
      hold.lost = true;
      if (this.holds.get(hold.dir) === hold) this.holds.delete(hold.dir);
      // proper-lockfile stops refreshing and removes the folder through volumeFs.rmdir (ours only);
      // after a compromise it says ERELEASED/ENOTACQUIRED and removes nothing.
      await hold.unlock?.().catch(() => undefined);
    })();
    const tracked = done.finally(() => {
      if (this.releasing.get(hold.dir) === tracked) this.releasing.delete(hold.dir);
    });
    this.releasing.set(hold.dir, tracked);
    return tracked;
  }

  private state(dir: string): DirState {
    let s = this.dirs.get(dir);
    if (!s) this.dirs.set(dir, (s = {}));
    return s;
  }

  private async isOurs(dir: string): Promise<boolean> {
    const st = await fs.promises.stat(dir);
    return st.mtimeMs === this.state(dir).ours;
  }

  /** A stored mtime as local time: shifted by the clock's offset, the same reading for the same mtime. */
  private toLocal(dir: string, raw: number): number {
    const s = this.state(dir);
    if (s.seen?.raw !== raw) s.seen = { raw, local: Math.floor(raw - this.clock.offsetMs) };
    return s.seen.local;
  }

  /** A lock folder this server may remove: its own, or one nobody touched for staleMs (volume clock). */
  private removable(dir: string, raw: number): boolean {
    return this.dirs.get(dir)?.ours === raw || raw < this.clock.now() - this.t.staleMs;
  }

  private forget(dir: string): void {
    if (!this.holds.has(dir)) this.dirs.delete(dir);
  }

  /** A touch that completed: the lease runs from when it began, unless it had already run out. */
  private touched(dir: string, began: number): void {
    const hold = this.holds.get(dir);
    if (!hold || hold.lost) return;
    if (!hold.lifetime && performance.now() >= hold.leaseUntil) {
      this.lose(hold, 'its lock was refreshed too late (the server was stopped or cut off)');
      return;
    }
    hold.leaseUntil = Math.max(hold.leaseUntil, began + this.t.staleMs - this.t.marginMs);
  }

  /** The file system proper-lockfile works through (see the top). Callback style, as it calls it. */
  private readonly volumeFs = {
    mkdir: (dir: string, cb: (err: NodeJS.ErrnoException | null) => void): void => fs.mkdir(dir, cb),
    stat: (dir: string, cb: (err: NodeJS.ErrnoException | null, st?: { mtime: Date }) => void): void =>
      fs.stat(dir, (err, st) => (err ? cb(err) : cb(null, { mtime: new Date(this.toLocal(dir, st.mtimeMs)) }))),
    utimes: (dir: string, _atime: Date, mtime: Date, cb: (err: NodeJS.ErrnoException | null) => void): void => {
      const began = performance.now();
      const local = mtime.getTime();
      // Now on the volume's clock, with a random fraction of a millisecond: "still ours" compares
      // stamps, and two holders stamping in the same millisecond (proper-lockfile's precision probe
      // stamps a whole second + 5 ms) must not look alike. proper-lockfile is shown `local`.
      const stamp = lockStamp(Date.now() + this.clock.offsetMs);
      fs.utimes(dir, stamp, stamp, (err) => {
        if (err) return cb(err);
        fs.stat(dir, (err2, st) => {
          if (err2) return cb(err2);
          const s = this.state(dir);
          // Read back as stamped, else another taker stamped it between our utimes and this stat:
          // it is not ours, and its stamp must not be taken for ours (two holders of one lock).
          s.ours = readBackIsOurs(stamp, st.mtimeMs) ? st.mtimeMs : Number.NaN;
          s.seen = { raw: st.mtimeMs, local };
          this.touched(dir, began);
          cb(null);
        });
      });
    },
    rmdir: (dir: string, cb: (err: NodeJS.ErrnoException | null) => void): void =>
      fs.stat(dir, (err, st) => {
        if (err) return cb(err);
        if (!this.removable(dir, st.mtimeMs)) return cb(null); // another server's fresh lock: left alone
        fs.rmdir(dir, (err2) => {
          if (!err2) this.forget(dir);
          cb(err2);
        });
      }),
    rmdirSync: (dir: string): void => {
      const st = fs.statSync(dir, { throwIfNoEntry: false });
      if (st && this.removable(dir, st.mtimeMs)) fs.rmdirSync(dir);
    },
    realpath: fs.realpath,
  };

  /** For the log: a lock's age on the volume's clock, in seconds (undefined when there is none). */
  async ageSeconds(file: string): Promise<number | undefined> {
    const st = await fs.promises.stat(`${file}.lock`).catch(() => undefined);
    return st && Math.max(0, Math.round((this.clock.now() - st.mtimeMs) / 100) / 10);
  }
}
