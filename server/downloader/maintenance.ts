/**
 * What runs outside any job, periodically and after an outside edit of the status file: stale
 * detection (an active entry that no transfer of this process moves), retention (finished
 * entries dropped after RETENTION_HOURS), re-queueing, and the merge of another process's edits
 * with the entries our live transfers own.
 */
import { isActive, isFinished } from '../protocol/status';
import type { Entry } from '../protocol/wire';
import { nowSeconds } from '../store/entry';
import type { StatusStore } from '../store/status-store';
import type { Transition } from './transition';

export interface MaintenanceDeps {
  store: StatusStore;
  staleMinutes: number;
  retentionHours: number;
  /** Whether a transfer of this process runs for this destination. */
  isLive(dest: string): boolean;
  isQueued(dest: string): boolean;
  enqueue(dest: string): void;
  /** Drops a finished entry (and the `.part` of a failed one). */
  forget(entry: Entry): void;
  transition: Transition;
}

/** Stale detection and retention; runs periodically, not only at start-up. */
export function maintain(d: MaintenanceDeps): void {
  const now = nowSeconds();
  for (const e of d.store.all()) {
    if (d.isLive(e.dest)) continue; // a live transfer is never stale: the stall timeout watches it
    // Queued is waiting for a slot, not stalled; the other active statuses need a transfer.
    if (e.status !== 'queued' && isActive(e.status) && now - e.timestamp > d.staleMinutes * 60) {
      d.store.put(
        d.transition(e, 'error', {
          speed: 0,
          eta: null,
          completion_time: now,
          error: { code: 'STALE', message: `No progress for ${d.staleMinutes} minutes and no transfer is running; press retry to resume` },
        }),
      );
    } else if (e.status === 'queued' && !d.isQueued(e.dest)) {
      d.enqueue(e.dest);
    } else if (isFinished(e.status) && now - (e.completion_time ?? e.timestamp) > d.retentionHours * 3600) {
      d.forget(e);
    }
  }
}

/** Another process edited the status file: take its entries, except those our live transfers own. */
export function mergeExternal(store: StatusStore, live: Iterable<string>, entries: Map<string, Entry>): void {
  const merged = new Map(entries);
  for (const dest of live) {
    const ours = store.get(dest);
    if (ours) merged.set(dest, ours);
  }
  store.replaceAll(merged.values());
}
