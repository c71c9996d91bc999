/**
 * The downloads as the live client (ws-client.ts) knows them: every entry by id and the `seq` of
 * the last applied message. A snapshot, or what a poll of `GET /status` read, replaces them all;
 * an update or a removal applies only when its `seq` is newer. Pure: no socket, no timers, no
 * events; it returns which downloads changed and the client tells its listeners.
 */
import type { Entry, RemovedMessage, SnapshotMessage, UpdateMessage } from '../server/protocol/wire.js';

/** Which downloads changed; `reset` when the whole set was replaced (snapshot, poll). */
export interface DownloadsChange {
  ids: ReadonlySet<string>;
  reset: boolean;
}

/** The server messages that carry downloads. */
export type DownloadsMessage = SnapshotMessage | UpdateMessage | RemovedMessage;

export class LiveDownloads {
  private readonly entries = new Map<string, Entry>();
  private seqValue = -1;

  /** The latest state of every download, keyed by id. Read-only: it changes as messages arrive. */
  get downloads(): ReadonlyMap<string, Entry> {
    return this.entries;
  }

  /** `seq` of the last applied message; -1 before the first snapshot. */
  get seq(): number {
    return this.seqValue;
  }

  /**
   * Applies one message. Updates and removals whose `seq` is not greater than the last applied one
   * are stale and ignored; a snapshot always replaces the whole state.
   * Returns what changed, or undefined when the downloads did not.
   */
  apply(m: DownloadsMessage): DownloadsChange | undefined {
    switch (m.type) {
      case 'snapshot': {
        const change = this.replaceAll(m.downloads);
        this.seqValue = m.seq;
        return change;
      }
      case 'update':
        if (m.seq <= this.seqValue) return undefined;
        this.seqValue = m.seq;
        this.entries.set(m.download.id, m.download);
        return { ids: new Set([m.download.id]), reset: false };
      case 'removed':
        if (m.seq <= this.seqValue) return undefined;
        this.seqValue = m.seq;
        if (!this.entries.delete(m.id)) return undefined;
        return { ids: new Set([m.id]), reset: false };
    }
  }

  /** Replaces the state with what a poll read; it carries no `seq`, so the next snapshot decides. */
  replaceAll(downloads: Entry[]): DownloadsChange {
    const ids = new Set<string>(this.entries.keys());
    this.entries.clear();
    for (const e of downloads) {
      this.entries.set(e.id, e);
      ids.add(e.id);
    }
    return { ids, reset: true };
  }
}
