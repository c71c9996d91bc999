/**
 * One owner per destination. This server holds the lock of every destination whose download it
 * lists unfinished (queued, under way or paused): taken before a new download is accepted
 * (fleet.ts), before a job writes, and at start-up for what its status file lists; let go when
 * the download finishes, is forgotten, or moves to another server. The locks are
 * `FLEET_DIR/locks/<sha256 of dest>.lock` (locks.ts). The downloader sees this as DestClaims
 * (downloader/claims.ts).
 *
 * When a destination's lock is another live server's and that server lists the download, the
 * download is that server's: it leaves this server's list ("handed over", logged). When the
 * lock is held but nobody lists it (a server just took it, or this server's own lock from before
 * a kill -9, which goes stale within FLEET_STALE_SECONDS), this server waits and tries again.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { DestClaims, WriteGuard } from '../downloader/claims';
import type { Logger } from '../logger';
import { isFinished } from '../protocol/status';
import type { Entry } from '../protocol/wire';
import type { StatusStore } from '../store/status-store';
import { destLockFile, type FleetPaths } from './files';
import type { HeldLock, LockSpace } from './locks';
import type { FleetView } from './view';

interface Held {
  lock: HeldLock;
  /** Removals of the `.part` under way: the lock is kept until they are done. */
  busy: number;
}

export interface ClaimsOptions {
  locks: LockSpace;
  paths: FleetPaths;
  store: StatusStore;
  view: FleetView;
  log: Logger;
  /** Between two tries of a lock held by someone else. @default 500 */
  retryMs?: number;
}

export class Claims implements DestClaims {
  private readonly held = new Map<string, Held>();
  private readonly taking = new Map<string, Promise<boolean>>();
  /** Whether a job of this server runs for a destination (the Downloader's, once attached). */
  isLive: (dest: string) => boolean = () => false;
  private closed = false;

  constructor(private readonly o: ClaimsOptions) {}

  /** Whether this server holds `dest` (and has not lost it). */
  holds(dest: string): boolean {
    const h = this.held.get(dest);
    return h !== undefined && !h.lock.lost;
  }

  /** Takes `dest`'s lock once (no waiting). False when another holder has it; throws when FLEET_DIR cannot be used. */
  take(dest: string): Promise<boolean> {
    if (this.holds(dest)) return Promise.resolve(true);
    this.held.delete(dest);
    let taking = this.taking.get(dest);
    if (!taking) {
      taking = (async () => {
        if (this.closed) return false;
        const lock = await this.o.locks.acquire(destLockFile(this.o.paths, dest));
        if (!lock) return false;
        if (this.closed) {
          await lock.release();
          return false;
        }
        const held: Held = { lock, busy: 0 };
        lock.onLost((why) => {
          if (this.held.get(dest) === held) this.held.delete(dest);
          if (!this.closed) this.o.log.warn(`${dest}: lost its lock: ${why}`);
        });
        this.held.set(dest, held);
        return true;
      })().finally(() => this.taking.delete(dest));
      this.taking.set(dest, taking);
    }
    return taking;
  }

  async forJob(dest: string, signal: AbortSignal): Promise<WriteGuard | undefined> {
    let told = false;
    let failing = false;
    for (;;) {
      signal.throwIfAborted();
      const got = await this.take(dest).catch((err: unknown) => {
        if (!failing) this.o.log.warn(`${dest}: cannot take its lock in FLEET_DIR (${(err as Error).message}); trying again`);
        failing = true;
        return undefined;
      });
      if (got) {
        const lock = this.held.get(dest)?.lock;
        if (lock?.valid()) return { valid: () => lock.valid(), onLost: (listener) => lock.onLost(() => listener()) };
      } else if (got === false) {
        const holder = this.o.view.holderOf(dest);
        if (holder) {
          this.handOver(dest, holder);
          return undefined;
        }
        const e = this.o.store.get(dest);
        if (!e || isFinished(e.status)) return undefined;
        if (!told) {
          told = true;
          this.o.log.info(`${dest}: waiting for its lock, held by another server or left by an earlier run of this one (free within FLEET_STALE_SECONDS)`);
        }
      }
      await delay(this.o.retryMs ?? 500, undefined, { signal });
    }
  }

  async whileHeld(dest: string, fn: () => Promise<void>): Promise<void> {
    if (!this.holds(dest) && !(await this.take(dest).catch(() => false))) {
      this.o.log.info(`${dest}: its partial file is another server's now; left alone`);
      return;
    }
    const held = this.held.get(dest);
    if (!held?.lock.valid()) return;
    held.busy++;
    try {
      await fn();
    } finally {
      held.busy--;
      this.settle(dest);
    }
  }

  settle(dest: string): void {
    const held = this.held.get(dest);
    if (!held || held.busy > 0 || this.isLive(dest)) return;
    const e = this.o.store.get(dest);
    if (e && !isFinished(e.status) && !held.lock.lost) return;
    this.held.delete(dest);
    void held.lock.release();
  }

  async claimOrphan(dest: string): Promise<boolean> {
    if (this.o.view.listedElsewhere(dest)) return false;
    return this.take(dest).catch(() => false);
  }

  /**
   * Every unfinished download of this server gets its lock, or leaves for the server that has it;
   * locks of what is finished or gone are let go; leases that ran out are noticed. Periodic, and
   * at start-up (awaited, before any job runs).
   */
  async reconcile(): Promise<void> {
    for (const [dest, held] of [...this.held]) {
      held.lock.valid();
      this.settle(dest);
    }
    const pending: Array<Promise<void>> = [];
    for (const e of this.o.store.all()) {
      if (isFinished(e.status) || this.holds(e.dest) || this.taking.has(e.dest) || this.isLive(e.dest)) continue;
      pending.push(
        this.take(e.dest).then(
          (got) => {
            const holder = got ? undefined : this.o.view.holderOf(e.dest);
            if (holder) this.handOver(e.dest, holder);
          },
          (err: unknown) => this.o.log.warn(`${e.dest}: could not take its lock (${(err as Error).message})`),
        ),
      );
    }
    await Promise.all(pending);
  }

  /** Lets every lock go (at close, after the jobs ended). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.taking.values()]);
    const all = [...this.held.values()];
    this.held.clear();
    await Promise.all(all.map((h) => h.lock.release()));
  }

  /** The download is another server's now: it leaves this server's list (its files are that server's). */
  private handOver(dest: string, holder: Entry): void {
    const e = this.o.store.get(dest);
    if (!e || isFinished(e.status)) return;
    this.o.store.remove(dest);
    this.o.log.warn(`${dest}: continued by instance ${holder.instance} (it holds the destination's lock); taken off this server's list`);
  }
}
