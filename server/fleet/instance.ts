/**
 * This server's instance file, `FLEET_DIR/instances/<INSTANCE_NAME>.json`: its entries and a
 * heartbeat, for the other servers of the fleet to show and to know it alive. Written atomically,
 * when its entries changed at most once every `minIntervalMs` (1 s), and at least every
 * `heartbeatMs` when nothing changes. Each write also measures the volume's clock (clock.ts).
 * Only this server writes it: its name is held by a lock (fleet.ts).
 *
 *   { "version": 1, "instance": "pod-a", "host": "…", "pid": 17, "started": "<ISO 8601>",
 *     "heartbeat": <volume time, epoch ms>, "stopped"?: true, "entries": { "<dest>": entry, … } }
 *
 * The heartbeat the others go by is the file's mtime, which the volume sets: `heartbeat` is for
 * people reading the file.
 */
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../logger';
import type { Entry } from '../protocol/wire';
import type { StatusStore } from '../store/status-store';
import type { VolumeClock } from './clock';
import { writeAtomic, type FleetPaths } from './files';

export interface InstanceDoc {
  version: 1;
  instance: string;
  host: string;
  pid: number;
  started: string;
  heartbeat: number;
  stopped?: true;
  entries: Record<string, Entry>;
}

/** Another server's file, as far as it can be used; undefined when it is not one (or names another server). */
export function parseInstanceDoc(text: string, name: string): { host?: string; stopped: boolean; entries: Record<string, unknown> } | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return undefined;
  const d = doc as Record<string, unknown>;
  if (d.version !== 1 || d.instance !== name) return undefined;
  const entries = d.entries;
  if (!entries || typeof entries !== 'object' || Array.isArray(entries)) return undefined;
  return { ...(typeof d.host === 'string' ? { host: d.host.slice(0, 255) } : {}), stopped: d.stopped === true, entries: entries as Record<string, unknown> };
}

export interface PublisherOptions {
  instance: string;
  paths: FleetPaths;
  store: StatusStore;
  clock: VolumeClock;
  log: Logger;
  /** @default 1000 */
  minIntervalMs?: number;
  heartbeatMs: number;
}

export class Publisher {
  readonly file: string;
  private dirty = true;
  private last = 0;
  private writing: Promise<void> | undefined;
  private failing = false;
  private readonly started = new Date(performance.timeOrigin).toISOString();
  private readonly unsubscribe: () => void;
  /** Until begin(): the entries are not this server's to show yet (start-up sorts out which are). */
  private withEntries = false;

  constructor(private readonly o: PublisherOptions) {
    this.file = path.join(o.paths.instances, `${o.instance}.json`);
    const mark = (): void => {
      this.dirty = true;
    };
    o.store.on('update', mark).on('removed', mark).on('reset', mark);
    this.unsubscribe = () => o.store.off('update', mark).off('removed', mark).off('reset', mark);
  }

  /** From now on the file carries this server's entries. */
  begin(): void {
    this.withEntries = true;
    this.dirty = true;
  }

  /** Publishes when due (see the top); called often (every 250 ms). */
  tick(): Promise<void> {
    const since = Date.now() - this.last;
    if ((this.dirty && since >= (this.o.minIntervalMs ?? 1000)) || since >= this.o.heartbeatMs) return this.publish();
    return Promise.resolve();
  }

  /** Writes the file now (waiting for a write under way first). */
  publish(stopped = false): Promise<void> {
    const run = async (): Promise<void> => {
      this.dirty = false;
      this.last = Date.now();
      const doc: InstanceDoc = {
        version: 1,
        instance: this.o.instance,
        host: os.hostname(),
        pid: process.pid,
        started: this.started,
        heartbeat: Math.round(this.o.clock.now()),
        ...(stopped ? { stopped: true as const } : {}),
        entries: this.withEntries ? Object.fromEntries(this.o.store.all().map((e) => [e.dest, e])) : {},
      };
      try {
        const { mtimeMs, t0, t1 } = await writeAtomic(this.file, `${JSON.stringify(doc)}\n`);
        this.o.clock.sample(mtimeMs, t0, t1);
        if (this.failing) this.o.log.info(`fleet: ${this.file} is written again`);
        this.failing = false;
      } catch (err) {
        this.dirty = true;
        if (!this.failing) this.o.log.error(`fleet: could not write ${this.file} (${(err as Error).message}); the other servers will take this one for gone`);
        this.failing = true;
      }
    };
    const next = (this.writing ?? Promise.resolve()).then(run);
    const tracked: Promise<void> = next.finally(() => {
      if (this.writing === tracked) this.writing = undefined;
    });
    this.writing = tracked;
    return next;
  }

  close(): void {
    this.unsubscribe();
  }
}
