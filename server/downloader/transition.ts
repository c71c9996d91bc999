/**
 * The one way the downloader changes a download's status: checked against the state machine of
 * protocol/status.ts. An illegal change is a bug of ours, so under tests it throws (the test that
 * reaches it fails where it happens); in production it is logged and made anyway, as before the
 * check existed: refusing it would leave the entry in a state no job or command moves it out of.
 */
import type { Logger } from '../logger';
import { canTransition, type DownloadStatus } from '../protocol/status';
import type { Entry } from '../protocol/wire';
import { patchEntry, type EntryPatch } from '../store/entry';

/** `entry` moved to `to`, with `patch` applied (see patchEntry); the store is not touched. */
export type Transition = (entry: Entry, to: DownloadStatus, patch?: StatusPatch) => Entry;

/** A change that leaves the status alone (a status change goes through a Transition). */
export type StatusPatch = Omit<EntryPatch, 'status'>;

export class IllegalTransitionError extends Error {
  constructor(
    readonly from: DownloadStatus,
    readonly to: DownloadStatus,
    dest: string,
  ) {
    super(`illegal status change of ${dest}: ${from} → ${to} (not in TRANSITIONS of server/protocol/status.ts)`);
    this.name = 'IllegalTransitionError';
  }
}

/** Whether this process runs under jest or with NODE_ENV=test. */
export const underTest = (): boolean => process.env.JEST_WORKER_ID !== undefined || process.env.NODE_ENV === 'test';

/** @param o.strict throw on an illegal change instead of logging it. @default underTest() */
export function createTransition(o: { log: Pick<Logger, 'warn'>; strict?: boolean }): Transition {
  const strict = o.strict ?? underTest();
  return (entry, to, patch = {}) => {
    if (!canTransition(entry.status, to)) {
      const error = new IllegalTransitionError(entry.status, to, entry.dest);
      if (strict) throw error;
      o.log.warn(`${error.message}; made anyway`);
    }
    return patchEntry(entry, { ...patch, status: to });
  };
}
