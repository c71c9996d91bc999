/**
 * Owns the takeover of dead servers' downloads: the unfinished downloads of servers gone silent
 * (or stopped) are adopted by this server, one destination lock at a time, so that only one
 * server gets each; it resumes them from their `.part`. Run by fleet.ts's poll loop.
 */
import type { Downloader } from '../downloader/downloader';
import type { Logger } from '../logger';
import { isFinished } from '../protocol/status';
import type { Entry } from '../protocol/wire';
import type { StatusStore } from '../store/status-store';
import type { Claims } from './claims';
import type { VolumeClock } from './clock';
import type { FleetView } from './view';

/** What a takeover works with: the fleet member's parts. */
export interface TakeoverContext {
  downloader: Downloader | undefined;
  /** Whether the fleet member is closing (asked again between downloads). */
  closing(): boolean;
  view: FleetView;
  store: StatusStore;
  claims: Claims;
  clock: VolumeClock;
  log: Logger;
}

/** The unfinished downloads of servers gone silent: taken over, one lock at a time (only one server gets each). */
export async function takeOver(c: TakeoverContext): Promise<void> {
  const d = c.downloader;
  if (!d || c.closing()) return;
  for (const r of c.view.silentRemotes()) {
    for (const e of r.entries.values()) {
      if (isFinished(e.status) || c.closing()) continue;
      const mine = c.store.get(e.dest);
      if ((mine && !isFinished(mine.status)) || c.view.holderOf(e.dest)) continue;
      if (!(await c.claims.take(e.dest).catch(() => false))) continue;
      const again = c.store.get(e.dest);
      if ((again && !isFinished(again.status)) || c.view.holderOf(e.dest) || r.entries.get(e.dest) !== e) {
        c.claims.settle(e.dest);
        continue;
      }
      let adopted: Entry;
      try {
        adopted = d.adopt(e);
      } catch {
        c.claims.settle(e.dest); // shutting down
        continue;
      }
      const silent = Math.round((c.clock.now() - r.file.mtimeMs) / 1000);
      c.log.warn(
        `${e.dest}: taken over from instance ${r.name} (${r.stopped ? 'stopped' : 'silent'} for ${silent} s); ${adopted.status === 'paused' ? 'kept paused' : `resuming from ${adopted.downloaded} bytes`}`,
      );
    }
  }
}
