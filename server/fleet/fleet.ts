/**
 * Fleet mode (`FLEET_DIR`): several servers — pods of RunPod, Vast.ai… — each with its own status
 * file, sharing one `models/` tree on a network volume, cooperate through files in FLEET_DIR on
 * that volume, with no server of its own (docs/reference.md, "Fleet mode"):
 *
 * - one owner per destination (claims.ts, locks.ts): a server transfers into `<dest>.part` only
 *   while it holds the destination's lock; a dead server's locks go stale and its unfinished
 *   downloads are taken over by another server (takeover.ts), which resumes them from the `.part`;
 * - one view of the fleet (instance.ts, view.ts): each server publishes its entries and a
 *   heartbeat, and shows every live server's downloads, each with its `instance`;
 * - commands across the fleet (commands.ts, routing.ts): a new download of a destination another server has
 *   is refused (`409 ACTIVE_ELSEWHERE`), pause/resume/cancel/retry/remove of another server's
 *   download are handed to it.
 *
 * Start-up order (server.ts): open() before the status file is read (name and status file locked,
 * the others' files read), attach() the Downloader once it exists, begin() before it starts (this server's own
 * unfinished downloads locked, or handed over to the server that has them), close() after it
 * closed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Config, FleetConfig } from '../config';
import type { AddOptions, Downloader } from '../downloader/downloader';
import { resolveDest, filenameFromUrl } from '../disk/paths';
import { AppError, conflict } from '../errors';
import type { Logger } from '../logger';
import { parseSourceUrl } from '../net/url-policy';
import { isFinished } from '../protocol/status';
import type { AddRequest, AddResult, Entry, FleetDescription } from '../protocol/wire';
import type { StatusStore } from '../store/status-store';
import { Claims } from './claims';
import { VolumeClock } from './clock';
import type { FleetCommand } from './commands';
import { fleetPaths, writeAtomic, type FleetPaths } from './files';
import { Publisher } from './instance';
import { LockSpace, lockTimings, type HeldLock } from './locks';
import { routeCommand, runInbox, type RoutingContext } from './routing';
import { takeOver } from './takeover';
import { FleetView } from './view';

export type { FleetCommand } from './commands';

/** Timings, shortened by tests. */
export interface FleetTuning {
  /** How often the other servers' files are read (and stale ones' downloads taken over). @default 500 */
  pollMs?: number;
  /** How often this server looks for commands handed to it. @default 250 */
  commandPollMs?: number;
  /** Least time between two writes of this server's instance file while its entries change. @default 1000 */
  publishMs?: number;
  /** A new lock must still be ours this long after it was made. @default 100 */
  confirmMs?: number;
  /** A refused add waits up to this long for the server holding the lock to publish the download, to name it. @default 2500 */
  holderWaitMs?: number;
}

export class Fleet {
  readonly instance: string;
  readonly view: FleetView;
  readonly claims: Claims;
  private readonly paths: FleetPaths;
  private readonly publisher: Publisher;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly running = new Set<Promise<void>>();
  private downloader: Downloader | undefined;
  private closing: Promise<void> | undefined;
  private readonly unsubscribe: () => void;

  private constructor(
    private readonly o: { config: Readonly<Config>; fleet: FleetConfig; store: StatusStore; log: Logger; tuning: FleetTuning },
    private readonly clock: VolumeClock,
    private readonly locks: LockSpace,
    private readonly lifetime: HeldLock[],
  ) {
    const { fleet, store, log, config } = o;
    this.instance = fleet.instance;
    this.paths = fleetPaths(fleet.dir);
    const staleMs = fleet.staleSeconds * 1000;
    this.view = new FleetView({
      store,
      instance: this.instance,
      paths: this.paths,
      clock,
      staleMs,
      retentionMs: config.retentionHours * 3600_000,
      isValidDest: (dest) => destIsValid(config.modelsDir, dest),
      log,
    });
    this.claims = new Claims({ locks, paths: this.paths, store, view: this.view, log, retryMs: o.tuning.pollMs ?? 500 });
    this.publisher = new Publisher({
      instance: this.instance,
      paths: this.paths,
      store,
      clock,
      log,
      minIntervalMs: o.tuning.publishMs ?? 1000,
      heartbeatMs: Math.min(5000, Math.max(1000, staleMs / 4)),
    });
    // A download that finished or was forgotten lets its lock go (a job's end does so itself).
    const settle = (e: Entry): void => {
      if (this.store.get(e.dest) && !isFinished(this.store.get(e.dest)!.status)) return;
      setImmediate(() => this.claims.settle(e.dest));
    };
    store.on('update', settle).on('removed', settle);
    this.unsubscribe = () => store.off('update', settle).off('removed', settle);
  }

  private get store(): StatusStore {
    return this.o.store;
  }

  /**
   * Joins the fleet: FLEET_DIR's folders made, the volume's clock measured, this server's name
   * and status file locked (waiting up to FLEET_STALE_SECONDS for locks left by an earlier run of
   * this server; `LOCKED` when another live server has them), the other servers' files read.
   */
  static async open(config: Readonly<Config>, store: StatusStore, log: Logger, tuning: FleetTuning = {}): Promise<Fleet> {
    const fleet = config.fleet;
    if (!fleet) throw new Error('fleet mode is off (no FLEET_DIR)');
    const paths = fleetPaths(fleet.dir);
    try {
      for (const dir of [paths.instances, paths.locks, path.join(paths.commands, fleet.instance)]) await fs.mkdir(dir, { recursive: true });
    } catch (err) {
      throw new AppError('FLEET_UNAVAILABLE', `cannot use FLEET_DIR ${fleet.dir}: ${(err as Error).message}`);
    }
    const clock = new VolumeClock();
    const probe = path.join(paths.instances, `.${fleet.instance}.clock`);
    for (let i = 0; i < 3; i++) {
      const { mtimeMs, t0, t1 } = await writeAtomic(probe, `${Date.now()}\n`);
      clock.sample(mtimeMs, t0, t1);
    }
    await fs.rm(probe, { force: true });
    const locks = new LockSpace(clock, { ...lockTimings(fleet.staleSeconds), ...(tuning.confirmMs !== undefined ? { confirmMs: tuning.confirmMs } : {}) });
    const hold = (file: string, what: string, hint: string): Promise<HeldLock> => holdForLife(locks, file, fleet.staleSeconds, log, what, hint);
    const lifetime = await Promise.allSettled([
      hold(path.join(paths.instances, fleet.instance), `the name ${fleet.instance} in the fleet`, 'set INSTANCE_NAME to a name of its own'),
      hold(`${config.statusFile}.fleet`, config.statusFile, 'give each server a STATUS_FILE of its own'),
    ]);
    const held = lifetime.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = lifetime.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(held.map((h) => h.release()));
      throw failed.reason;
    }
    const self = new Fleet({ config, fleet, store, log, tuning }, clock, locks, held);
    await self.publisher.publish();
    await self.view.poll();
    log.info(`fleet: this is instance ${fleet.instance} in ${fleet.dir} (${self.view.instances().length - 1} other server(s) known; stale after ${fleet.staleSeconds} s)`);
    return self;
  }

  /** The Downloader whose downloads this fleet member coordinates (the store is loaded by now). */
  attach(downloader: Downloader): void {
    this.view.resync();
    this.downloader = downloader;
    this.claims.isLive = (dest) => downloader.isLive(dest);
  }

  /** Before the Downloader starts: this server's unfinished downloads locked or handed over; then the loops run. */
  async begin(): Promise<void> {
    await this.claims.reconcile();
    this.publisher.begin();
    await this.publisher.publish();
    const t = this.o.tuning;
    this.loop(250, () => this.publisher.tick());
    this.loop(t.pollMs ?? 500, async () => {
      await this.view.poll();
      await takeOver({ downloader: this.downloader, closing: () => this.closing !== undefined, view: this.view, store: this.store, claims: this.claims, clock: this.clock, log: this.o.log });
      await this.claims.reconcile();
    });
    this.loop(t.commandPollMs ?? 250, () => runInbox(this.routing()));
  }

  /** Every download of every live server (and the last word of silent ones), each with its `instance`. */
  list(): Entry[] {
    return this.view.all();
  }

  /** A download by id: as listed; else this server's own (listed under another server's entry for its dest), else another's. */
  get(id: string): Entry | undefined {
    const own = this.view.get(id) ? undefined : this.store.getById(id);
    return this.view.get(id) ?? (own && this.view.own(own)) ?? this.view.remoteById(id);
  }

  /**
   * The download of `dest` a workflow plan shows: this server's while it is unfinished, else the
   * one another live server has under way, else this server's finished one.
   */
  entryFor(dest: string): Entry | undefined {
    const mine = this.store.get(dest);
    if (mine && (!isFinished(mine.status) || this.downloader?.isLive(dest))) return this.view.own(mine);
    return this.view.holderOf(dest) ?? (mine && this.view.own(mine));
  }

  describe(): FleetDescription {
    return { instance: this.instance, stale_seconds: this.o.fleet.staleSeconds, instances: this.view.instances() };
  }

  /**
   * A new download (what intake settled): refused with `409 ACTIVE_ELSEWHERE` when another server
   * has its destination (listed, or its lock held); else the destination is locked first, then
   * the Downloader's own checks and entry. Answers carry this server's `instance`.
   */
  async add(req: AddRequest, options: AddOptions = {}): Promise<AddResult> {
    const d = this.downloader!;
    const dest = this.destOf(req);
    if (dest !== undefined) {
      const mine = this.store.get(dest);
      if (!mine || (isFinished(mine.status) && !d.isLive(dest))) {
        const holder = this.view.holderOf(dest);
        if (holder) throw activeElsewhere(dest, holder);
        let got: boolean;
        try {
          got = await this.claims.take(dest);
        } catch (err) {
          throw new AppError('FLEET_UNAVAILABLE', `Cannot take the lock of ${dest} in FLEET_DIR (${(err as Error).message}); try again`, { status: 503, cause: err });
        }
        if (!got) throw activeElsewhere(dest, await this.waitForHolder(dest));
      }
    }
    try {
      const result = d.add(req, options);
      return { ...result, download: this.view.own(result.download) };
    } catch (err) {
      const e = err as { download?: Entry };
      if (e.download && !e.download.instance) e.download = this.view.own(e.download);
      throw err;
    } finally {
      if (dest !== undefined) this.claims.settle(dest);
    }
  }

  /** A command by download id: done here, handed to the server that has it, or refused (routing.ts). */
  command(action: FleetCommand, id: string): Promise<{ download: Entry; forwarded_to?: string }> {
    return routeCommand(this.routing(), action, id);
  }

  /** Leaves the fleet: loops stopped, a last instance file that says so, every lock let go. Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      await Promise.allSettled([...this.running]);
      this.unsubscribe();
      this.view.close();
      await this.claims.close();
      await this.publisher.publish(true);
      this.publisher.close();
      await Promise.all(this.lifetime.map((h) => h.release()));
      await this.locks.releaseAll();
    })());
  }

  /** What routing.ts works with. */
  private routing(): RoutingContext {
    const { store, view, clock, paths, instance, downloader } = this;
    return { instance, staleSeconds: this.o.fleet.staleSeconds, downloader, paths, view, store, clock, log: this.o.log };
  }

  /** Runs `fn` every `everyMs` after the previous run ended, until close. */
  private loop(everyMs: number, fn: () => Promise<void>): void {
    const schedule = (): void => {
      if (this.closing) return;
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        const run = fn()
          .catch((err: unknown) => this.o.log.error(`fleet: ${(err as Error).stack ?? String(err)}`))
          .finally(() => {
            this.running.delete(run);
            schedule();
          });
        this.running.add(run);
      }, everyMs);
      timer.unref();
      this.timers.add(timer);
    };
    schedule();
  }

  /** The `dest` a request would get, as Downloader.add computes it; undefined when it would refuse it. */
  private destOf(req: AddRequest): string | undefined {
    try {
      if (!req || typeof req !== 'object' || typeof req.url !== 'string') return undefined;
      const source = parseSourceUrl(req.url);
      const filename = (typeof req.filename === 'string' && req.filename) || filenameFromUrl(source);
      return filename ? resolveDest(this.o.config.modelsDir, req.folder, filename).dest : undefined;
    } catch {
      return undefined;
    }
  }

  /** The live server that holds `dest`, once it has published it (it publishes within about a second). */
  private async waitForHolder(dest: string): Promise<Entry | undefined> {
    const deadline = Date.now() + (this.o.tuning.holderWaitMs ?? 2500);
    for (;;) {
      const holder = this.view.holderOf(dest);
      if (holder) return holder;
      if (Date.now() > deadline) return this.view.holderOf(dest, { silentToo: true });
      await delay(100);
      await this.view.poll();
    }
  }
}

function activeElsewhere(dest: string, holder: Entry | undefined): AppError {
  if (!holder) return conflict('ACTIVE_ELSEWHERE', `${dest} is being downloaded by another server of the fleet (it holds the destination's lock and has not listed it yet); try again in a moment`);
  const silent = holder.instance_stale ? ', which is silent: it is taken over once its lock is stale' : '';
  return Object.assign(conflict('ACTIVE_ELSEWHERE', `${dest} is ${holder.status} on instance ${holder.instance}${silent}`), { download: holder });
}

function destIsValid(modelsDir: string, dest: string): boolean {
  const slash = dest.lastIndexOf('/');
  try {
    resolveDest(modelsDir, dest.slice(0, slash), dest.slice(slash + 1));
    return true;
  } catch {
    return false;
  }
}

/**
 * A lock held for the server's life: its name in the fleet, its status file (the pid lock beside
 * it means nothing across hosts). A lock left by an earlier run of this server (kill -9) goes
 * stale within FLEET_STALE_SECONDS: waited for, that long and a bit; one still fresh then is
 * another live server's: `LOCKED`.
 */
async function holdForLife(locks: LockSpace, file: string, staleSeconds: number, log: Logger, what: string, hint: string): Promise<HeldLock> {
  const deadline = Date.now() + staleSeconds * 1000 + locks.t.updateMs + 1000;
  let told = false;
  for (;;) {
    let lock: HeldLock | undefined;
    try {
      lock = await locks.acquire(file, { lifetime: true });
    } catch (err) {
      throw new AppError('FLEET_UNAVAILABLE', `cannot lock ${what} (${file}.lock): ${(err as Error).message}`);
    }
    if (lock) {
      lock.onLost((why) => log.error(`fleet: this server no longer holds ${what}: ${why}; another server may be using it too`));
      return lock;
    }
    if (Date.now() > deadline) {
      throw new AppError('LOCKED', `another Model Downloader is using ${what} (its lock ${file}.lock is kept fresh); ${hint}`);
    }
    if (!told) log.warn(`fleet: ${what} is locked (by an earlier run of this server, or another server); waiting up to ${staleSeconds} s for the lock to go stale`);
    told = true;
    await delay(500);
  }
}
