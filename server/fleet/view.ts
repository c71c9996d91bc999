/**
 * One view of the fleet: this server's entries and those the other servers publish
 * (`FLEET_DIR/instances/<name>.json`, polled: inotify does not see other hosts' writes), merged
 * into one list keyed by `dest`, each entry with its `instance`. It is what `/status`,
 * `/api/downloads` and the WebSocket show in fleet mode: it has the store's `seq`, `all()` and
 * `update`/`removed`/`reset` events, so the hub subscribes to it as it would to the store.
 *
 * One entry per `dest`: an unfinished download over a finished one, a live server's over a silent
 * one, then this server's own, then the newest. A server not heard from for FLEET_STALE_SECONDS
 * (or that said it stopped) is stale: its entries are shown with `instance_stale: true`, speed 0,
 * as its last word; after RETENTION_HOURS of silence it is no longer shown at all.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger';
import { isFinished } from '../protocol/status';
import type { Entry, InstanceSummary } from '../protocol/wire';
import { parseEntry } from '../store/entry';
import type { StatusStore, StoreEvents } from '../store/status-store';
import type { VolumeClock } from './clock';
import { INSTANCE_NAME, readIfChanged, type FleetPaths } from './files';
import { parseInstanceDoc } from './instance';

/** Instance files larger than this are not read (a status file of 100,000 entries is 34 MB). */
const MAX_INSTANCE_FILE = 64 * 1024 * 1024;

export interface RemoteInstance {
  name: string;
  host?: string;
  /** Its file as last read (its mtime, on the volume's clock, is its heartbeat). */
  file: { ino: number; size: number; mtimeMs: number };
  /** Not heard from for FLEET_STALE_SECONDS, or said it stopped. */
  stale: boolean;
  stopped: boolean;
  /** Its entries as published, validated (no `instance`), by dest. */
  entries: Map<string, Entry>;
  /** The same, as shown (with `instance`): kept while unchanged, so a poll sends no update for them. */
  shown: Map<string, Entry>;
  /** Each entry's JSON as read, to tell a changed one. */
  texts: Map<string, string>;
}

export interface FleetViewOptions {
  store: StatusStore;
  instance: string;
  paths: FleetPaths;
  clock: VolumeClock;
  staleMs: number;
  retentionMs: number;
  /** A `dest` this server would accept (inside MODELS_DIR): others are not shown. */
  isValidDest: (dest: string) => boolean;
  log: Logger;
}

export class FleetView extends EventEmitter<StoreEvents> {
  private readonly remotes = new Map<string, RemoteInstance>();
  /** The entry shown for each dest, and the dest of each id shown. */
  private readonly shown = new Map<string, Entry>();
  private readonly ids = new Map<string, string>();
  /** This server's entries as shown, by the store's object (entries are immutable). */
  private readonly ownShown = new WeakMap<Entry, Entry>();
  private readonly badFiles = new Set<string>();
  private seqValue = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly o: FleetViewOptions) {
    super();
    const onChange = (e: Entry): void => this.recompute(e.dest);
    const onReset = (): void => this.rebuild();
    o.store.on('update', onChange).on('removed', onChange).on('reset', onReset);
    this.unsubscribe = () => o.store.off('update', onChange).off('removed', onChange).off('reset', onReset);
    for (const e of o.store.all()) this.recompute(e.dest, true);
  }

  /** Increases with every change of the view: the WebSocket's `seq` in fleet mode. */
  get seq(): number {
    return this.seqValue;
  }

  all(): Entry[] {
    return [...this.shown.values()];
  }

  get(id: string): Entry | undefined {
    const dest = this.ids.get(id);
    return dest === undefined ? undefined : this.shown.get(dest);
  }

  /** This server's entry as shown (with its `instance`). */
  own(e: Entry): Entry {
    let shown = this.ownShown.get(e);
    if (!shown) this.ownShown.set(e, (shown = { ...e, instance: this.o.instance }));
    return shown;
  }

  /** A live other server's unfinished entry for `dest`: that server owns the download. `silentToo`: or a silent server's. */
  holderOf(dest: string, options: { silentToo?: boolean } = {}): Entry | undefined {
    for (const r of this.remotes.values()) {
      const e = r.stale && !options.silentToo ? undefined : r.shown.get(dest);
      if (e && !isFinished(e.status)) return e;
    }
    return undefined;
  }

  /** Whether a live other server lists `dest` (in any state). */
  listedElsewhere(dest: string): boolean {
    for (const r of this.remotes.values()) if (!r.stale && r.entries.has(dest)) return true;
    return false;
  }

  /** Another server's entry with this id (live or not), as shown. */
  remoteById(id: string): Entry | undefined {
    let found: Entry | undefined;
    for (const r of this.remotes.values()) {
      for (const e of r.shown.values()) {
        if (e.id === id && (!found || (found.instance_stale && !e.instance_stale))) found = e;
      }
    }
    return found;
  }

  /**
   * The other servers silent for longer than FLEET_STALE_SECONDS, with what they left unfinished:
   * theirs to take over. One that said it stopped is shown as stale at once, but its downloads
   * wait out the stale time like a dead one's: a server restarted at once (or a whole fleet
   * stopped together) keeps its downloads.
   */
  silentRemotes(): RemoteInstance[] {
    const now = this.o.clock.now();
    return [...this.remotes.values()].filter((r) => r.stale && now - r.file.mtimeMs > this.o.staleMs);
  }

  instances(): InstanceSummary[] {
    const own = this.o.store.all();
    const now = this.o.clock.now();
    return [
      { name: this.o.instance, self: true, live: true, stopped: false, silent_seconds: 0, downloads: own.length, active: own.filter((e) => !isFinished(e.status)).length },
      ...[...this.remotes.values()]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((r) => ({
          name: r.name,
          self: false,
          live: !r.stale,
          stopped: r.stopped,
          silent_seconds: Math.max(0, Math.round((now - r.file.mtimeMs) / 100) / 10),
          downloads: r.entries.size,
          active: [...r.entries.values()].filter((e) => !isFinished(e.status)).length,
          ...(r.host ? { host: r.host } : {}),
        })),
    ];
  }

  /** Reads the other servers' files (those changed since the last poll) and their liveness; updates the view. */
  async poll(): Promise<void> {
    let names: string[];
    try {
      names = await fs.readdir(this.o.paths.instances);
    } catch {
      names = [];
    }
    const changed = new Set<string>();
    const seen = new Set<string>();
    for (const fileName of names) {
      if (!fileName.endsWith('.json')) continue;
      const name = fileName.slice(0, -'.json'.length);
      if (!INSTANCE_NAME.test(name) || name === this.o.instance) continue;
      const prev = this.remotes.get(name);
      const read = await readIfChanged(path.join(this.o.paths.instances, fileName), prev?.file, MAX_INSTANCE_FILE);
      if (!read) continue;
      seen.add(name);
      let r = prev;
      if (read.text !== undefined) {
        const doc = parseInstanceDoc(read.text, name);
        if (!doc) {
          if (!this.badFiles.has(name)) this.o.log.warn(`fleet: ${fileName} is not an instance file of this fleet; ignored`);
          this.badFiles.add(name);
          if (!prev) seen.delete(name);
          continue;
        }
        this.badFiles.delete(name);
        r = this.apply(name, read, doc, prev, changed);
      }
      if (!r) continue;
      const silent = this.o.clock.now() - r.file.mtimeMs;
      if (silent > this.o.retentionMs) {
        seen.delete(name);
        continue;
      }
      const stale = r.stopped || silent > this.o.staleMs;
      if (stale !== r.stale) {
        r.stale = stale;
        for (const [dest, e] of r.entries) {
          r.shown.set(dest, this.remoteShown(e, r));
          changed.add(dest);
        }
      }
    }
    for (const [name, r] of this.remotes) {
      if (seen.has(name)) continue;
      this.remotes.delete(name);
      for (const dest of r.entries.keys()) changed.add(dest);
    }
    for (const dest of changed) this.recompute(dest);
  }

  /** This server's entries read again as a whole (the store was loaded after the view was made): a `reset`. */
  resync(): void {
    this.rebuild();
  }

  close(): void {
    this.unsubscribe();
  }

  /** A newly read file of server `name`: its entries validated, unchanged ones kept as they were. */
  private apply(
    name: string,
    read: { ino: number; size: number; mtimeMs: number },
    doc: NonNullable<ReturnType<typeof parseInstanceDoc>>,
    prev: RemoteInstance | undefined,
    changed: Set<string>,
  ): RemoteInstance {
    const r: RemoteInstance = {
      name,
      ...(doc.host ? { host: doc.host } : {}),
      file: { ino: read.ino, size: read.size, mtimeMs: read.mtimeMs },
      stale: prev?.stale ?? false, // judged again by the caller, which shows the entries again when it changed
      stopped: doc.stopped,
      entries: new Map(),
      shown: new Map(),
      texts: new Map(),
    };
    for (const [dest, value] of Object.entries(doc.entries)) {
      if (!this.o.isValidDest(dest)) continue;
      const text = JSON.stringify(value);
      const before = prev?.entries.get(dest);
      if (before && prev!.texts.get(dest) === text) {
        r.entries.set(dest, before);
        r.shown.set(dest, prev!.shown.get(dest)!);
        r.texts.set(dest, text);
        continue;
      }
      const entry = remoteEntry(dest, value);
      if (!entry) continue;
      r.entries.set(dest, entry);
      r.shown.set(dest, this.remoteShown(entry, r));
      r.texts.set(dest, text);
      changed.add(dest);
    }
    for (const dest of prev?.entries.keys() ?? []) if (!r.entries.has(dest)) changed.add(dest);
    this.remotes.set(name, r);
    return r;
  }

  private remoteShown(e: Entry, r: RemoteInstance): Entry {
    return r.stale ? { ...e, speed: 0, eta: null, instance: r.name, instance_stale: true } : { ...e, instance: r.name };
  }

  /** The entry to show for `dest` (see the top). */
  private pick(dest: string): Entry | undefined {
    let best: { e: Entry; rank: number; own: boolean } | undefined;
    const consider = (e: Entry, live: boolean, own: boolean): void => {
      const rank = (isFinished(e.status) ? 0 : 2) + (live ? 1 : 0);
      if (!best || rank > best.rank || (rank === best.rank && !best.own && (own || e.timestamp > best.e.timestamp))) best = { e, rank, own };
    };
    const mine = this.o.store.get(dest);
    if (mine) consider(this.own(mine), true, true);
    for (const r of this.remotes.values()) {
      const e = r.shown.get(dest);
      if (e) consider(e, !r.stale, false);
    }
    return best?.e;
  }

  private recompute(dest: string, quiet = false): void {
    const next = this.pick(dest);
    const prev = this.shown.get(dest);
    if (next === prev) return;
    if (prev && (!next || prev.id !== next.id)) {
      this.shown.delete(dest);
      if (this.ids.get(prev.id) === dest) this.ids.delete(prev.id);
      if (!quiet) {
        this.seqValue++;
        this.emit('removed', prev);
      }
    }
    if (next) {
      this.shown.set(dest, next);
      this.ids.set(next.id, dest);
      if (!quiet) {
        this.seqValue++;
        this.emit('update', next);
      }
    }
  }

  /** This server's entries were replaced as a whole (an edit of its status file): every client gets a new snapshot. */
  private rebuild(): void {
    const dests = new Set([...this.shown.keys(), ...this.o.store.all().map((e) => e.dest)]);
    for (const dest of dests) this.recompute(dest, true);
    this.seqValue++;
    this.emit('reset');
  }
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/**
 * Another server's entry, validated as the status file's are (parseEntry: a file another process
 * wrote is as untrusted as a request), with what that drops kept when valid: the live speed, ETA
 * and the progress of a checksum pass.
 */
function remoteEntry(dest: string, value: unknown): Entry | undefined {
  const e = parseEntry(dest, value);
  if (typeof e === 'string') return undefined;
  const v = value as Record<string, unknown>;
  if (isNum(v.speed)) e.speed = v.speed;
  if (isNum(v.eta)) e.eta = v.eta;
  if (e.status === 'verifying' && isNum(v.progress) && v.progress <= 100) e.progress = Math.floor(v.progress);
  return e;
}
