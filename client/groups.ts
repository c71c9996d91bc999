/**
 * Downloads started together (a workflow's models, a Hugging Face repository's files) carry the
 * same `group` field; the lists show them under one header. This module sums a group's members
 * into what that header shows. Pure: no DOM, so it is unit-tested in Node.
 */
import type { DownloadStatus, Entry, GroupCommandAnswer } from '../server/protocol/wire.js';
import { isFinished } from '../server/protocol/status.js';

export interface GroupTotals {
  count: number;
  completed: number;
  failed: number;
  cancelled: number;
  paused: number;
  /** Members not finished yet (paused ones included). */
  unfinished: number;
  /**
   * Sums over the members whose size is known, cancelled ones left out (nobody waits for them):
   * `done` of `total` bytes. A completed member counts as its whole size.
   */
  done: number;
  total: number;
  /** Unfinished members whose size is not known yet (a failed one will not arrive: not counted). */
  unknownSizes: number;
  /** Bytes/s of the members transferring now. */
  speed: number;
  /** Bytes still to arrive for the members that are not paused. */
  left: number;
  /** Seconds, from `left` and `speed`; null when nothing flows. */
  eta: number | null;
  /** One status for the whole group, for its badge (see groupStatus). */
  status: DownloadStatus;
  /** Earliest `start_time`: where the group goes in the active list. */
  startTime: number;
  /** Latest completion (or last change) of a member: where a finished group goes. */
  endTime: number;
}

/**
 * The group's badge: the liveliest state any member is in while one is unfinished (downloading,
 * then verifying, queued, paused); once all have ended, `error` if one failed, else `completed`
 * if one completed, else `cancelled`.
 */
export function groupStatus(members: readonly Pick<Entry, 'status'>[]): DownloadStatus {
  const has = (s: DownloadStatus): boolean => members.some((m) => m.status === s);
  if (has('downloading') || has('starting')) return 'downloading';
  for (const s of ['verifying', 'queued', 'paused', 'error', 'completed'] as const) if (has(s)) return s;
  return 'cancelled';
}

export function groupTotals(members: readonly Entry[]): GroupTotals {
  const t: GroupTotals = {
    count: members.length,
    completed: 0,
    failed: 0,
    cancelled: 0,
    paused: 0,
    unfinished: 0,
    done: 0,
    total: 0,
    unknownSizes: 0,
    speed: 0,
    left: 0,
    eta: null,
    status: groupStatus(members),
    startTime: Infinity,
    endTime: 0,
  };
  for (const e of members) {
    t.startTime = Math.min(t.startTime, e.start_time);
    t.endTime = Math.max(t.endTime, e.completion_time ?? e.timestamp);
    if (e.status === 'completed') t.completed++;
    else if (e.status === 'error') t.failed++;
    else if (e.status === 'cancelled') t.cancelled++;
    if (e.status === 'paused') t.paused++;
    if (!isFinished(e.status)) t.unfinished++;
    if (e.status === 'downloading') t.speed += e.speed;
    if (e.status === 'cancelled') continue;
    const size = e.file_size ?? (e.status === 'completed' ? e.downloaded : null);
    if (size === null || size <= 0) {
      if (size === null && !isFinished(e.status)) t.unknownSizes++;
      continue;
    }
    t.total += size;
    t.done += e.status === 'completed' ? size : Math.min(e.downloaded, size);
    if (!isFinished(e.status) && e.status !== 'paused') t.left += Math.max(0, size - e.downloaded);
  }
  if (t.startTime === Infinity) t.startTime = 0;
  t.eta = t.speed > 0 && t.left > 0 ? t.left / t.speed : null;
  return t;
}

/** `3 of 5 done · 1 failed · 1 paused`. */
export function countsText(t: GroupTotals): string {
  const parts = [`${t.completed} of ${t.count} done`];
  if (t.failed) parts.push(`${t.failed} failed`);
  if (t.cancelled) parts.push(`${t.cancelled} cancelled`);
  if (t.paused) parts.push(`${t.paused} paused`);
  return parts.join(' · ');
}

/** The members of each group, keyed by group id, in the order the entries come. */
export function membersByGroup(entries: Iterable<Entry>): Map<string, Entry[]> {
  const groups = new Map<string, Entry[]>();
  for (const e of entries) {
    const id = e.group?.id;
    if (!id) continue;
    let list = groups.get(id);
    if (!list) groups.set(id, (list = []));
    list.push(e);
  }
  return groups;
}

const DONE: Readonly<Record<string, string>> = { pause: 'paused', resume: 'resumed', retry: 'retried', cancel: 'cancelled' };

/**
 * What to say under a group's header after a group command: nothing when every member it fits was
 * changed; else which members the server refused, and why (the first reason; all of them when few).
 */
export function groupCommandMessage(action: string, answer: GroupCommandAnswer): string | undefined {
  const refused = answer.left.filter((l) => l.error);
  if (refused.length === 0) return answer.downloads.length === 0 ? `Nothing left to ${action} in this group.` : undefined;
  const name = (dest: string): string => dest.slice(dest.lastIndexOf('/') + 1);
  const done = answer.downloads.length > 0 ? `${answer.downloads.length} ${DONE[action] ?? action}; ` : '';
  const shown = refused.slice(0, 3).map((l) => `${name(l.dest)}: ${l.error!.message}`).join(' · ');
  const more = refused.length > 3 ? ` · and ${refused.length - 3} more` : '';
  return `${done}${refused.length} could not be ${DONE[action] ?? action}: ${shown}${more}`;
}
