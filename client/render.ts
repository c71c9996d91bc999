/**
 * The download lists: one `<li>` per download, keyed by id, created once and updated in place.
 * A field is written only when its text changed, and rows move only when their section or
 * order changed, so an update of one download touches a handful of nodes.
 *
 * Downloads of one group (entry field `group`: a workflow's models, a repository's files) sit
 * together in one `<li class="group">` under a header with the group's own bar, speed, time left
 * and counts: in the active list while one of them is unfinished, then in the finished list.
 *
 * This file owns the lists themselves (which row or group goes where, in what order, the empty
 * states, the summary and the tab title); download-row.ts draws a row, group-block.ts a group.
 */
import type { Entry } from '../server/protocol/wire.js';
import { isFinished } from '../server/protocol/status.js';
import { createRow, updateRow, type Row, type RowAction } from './download-row.js';
import { forwardedNote, type FleetInfo } from './fleet.js';
import { formatBytes, formatDuration, formatSpeed } from './format.js';
import { createGroup, isExpanded, updateGroup, updateGroupNote, updateToggle, type GroupAction, type GroupBlock } from './group-block.js';

export type { RowAction } from './download-row.js';

export interface DashboardElements {
  activeList: HTMLElement;
  finishedList: HTMLElement;
  activeEmpty: HTMLElement;
  finishedEmpty: HTMLElement;
  summary: HTMLElement;
  clearButton: HTMLButtonElement;
}

/**
 * Runs a row's command; rejects with an Error whose message is shown in the row. In fleet mode it
 * resolves with `forwardedTo` when the server handed the command to the instance that has the download.
 */
export type ActionHandler = (entry: Entry, action: RowAction) => Promise<{ forwardedTo?: string } | void>;

/**
 * Runs a command for every download of a group; resolves with a message to show under the group's
 * header (members it could not change) or undefined; rejects with an Error whose message is shown.
 */
export type GroupActionHandler = (groupId: string, action: GroupAction) => Promise<string | undefined>;

export class Dashboard {
  private readonly rows = new Map<string, Row>();
  private readonly groups = new Map<string, GroupBlock>();
  private downloads: ReadonlyMap<string, Entry> = new Map();
  private readonly baseTitle: string;
  /**
   * Fleet mode: the last answer of `GET /api/fleet` (which instance is this page's server, since
   * when a silent one is silent). Rows read it when rendered: after setting it, render the rows
   * that have an `instance`.
   */
  fleet: FleetInfo | undefined;

  constructor(
    private readonly els: DashboardElements,
    private readonly onAction: ActionHandler,
    private readonly onGroupAction?: GroupActionHandler,
  ) {
    this.baseTitle = document.title;
    const onClick = (event: Event): void => {
      const button = (event.target as Element).closest<HTMLButtonElement>('button[data-action]');
      const li = button?.closest<HTMLElement>('li[data-id]');
      if (!button || !li) return;
      const entry = this.downloads.get(li.dataset.id!);
      const row = this.rows.get(li.dataset.id!);
      if (!entry || !row) return;
      const action = button.dataset.action as RowAction;
      button.disabled = true;
      row.commandError = undefined;
      row.commandNote = undefined;
      this.onAction(entry, action)
        .then((answer) => {
          // Handed to the instance that has the download: said until the row shows it done.
          const to = answer?.forwardedTo;
          if (to) row.commandNote = { text: forwardedNote(action, to), status: entry.status, instance: entry.instance };
        })
        .catch((err: unknown) => {
          row.commandError = (err as Error).message;
        })
        .finally(() => {
          button.disabled = false;
          // Through render(), not updateRow(): the answer may come after the update that moved the
          // row to another state, and that move must still happen.
          if (this.rows.get(entry.id) === row) this.render(this.downloads, [entry.id], false);
        });
    };
    const onToggle = (event: Event): void => {
      const button = (event.target as Element).closest<HTMLButtonElement>('button[data-toggle]');
      const block = button && this.groups.get(button.dataset.toggle!);
      if (!block) return;
      block.expanded = !isExpanded(block);
      updateToggle(block);
    };
    const onGroupClick = (event: Event): void => {
      const button = (event.target as Element).closest<HTMLButtonElement>('button[data-group-action]');
      const block = button && this.groups.get(button.closest<HTMLElement>('li[data-group]')?.dataset.group ?? '');
      if (!button || !block || !this.onGroupAction) return;
      button.disabled = true;
      block.message = undefined;
      updateGroupNote(block);
      this.onGroupAction(block.id, button.dataset.groupAction as GroupAction)
        .then((message) => {
          block.message = message;
        })
        .catch((err: unknown) => {
          block.message = (err as Error).message;
        })
        .finally(() => {
          button.disabled = false;
          if (this.groups.get(block.id) === block) updateGroupNote(block);
        });
    };
    for (const list of [els.activeList, els.finishedList]) {
      list.addEventListener('click', onClick);
      list.addEventListener('click', onToggle);
      list.addEventListener('click', onGroupClick);
    }
  }

  /**
   * Brings the lists in line with `downloads` for the ids that changed (all of them on `reset`).
   * Call it at most once per frame; the caller batches messages.
   */
  render(downloads: ReadonlyMap<string, Entry>, ids: Iterable<string>, reset: boolean): void {
    this.downloads = downloads;
    let reorder = reset;
    const touched = reset ? new Set([...this.rows.keys(), ...downloads.keys()]) : ids;
    const groupsTouched = new Set<string>();
    for (const id of touched) {
      const entry = downloads.get(id);
      const row = this.rows.get(id);
      if (!entry) {
        if (row) {
          row.el.remove();
          this.rows.delete(id);
          this.leaveGroup(id, row, groupsTouched);
          reorder = true; // the empty states and the clear button depend on what is left
        }
        continue;
      }
      if (!row) {
        this.rows.set(id, createRow(entry));
        reorder = true;
      } else if (row.status !== entry.status) {
        reorder = true;
      }
      const current = this.rows.get(id)!;
      const groupId = entry.group?.id || undefined;
      if (current.groupId !== groupId) {
        this.leaveGroup(id, current, groupsTouched);
        if (groupId) this.joinGroup(id, current, groupId, entry.group!.name);
        reorder = true;
      }
      if (groupId) groupsTouched.add(groupId);
      updateRow(current, entry, this.fleet);
    }
    for (const gid of groupsTouched) {
      const block = this.groups.get(gid);
      if (!block) continue;
      if (block.members.size === 0) {
        block.el.remove();
        this.groups.delete(gid);
        reorder = true;
      } else if (updateGroup(block, this.downloads)) {
        reorder = true;
      }
    }
    if (reorder) this.placeRows();
    this.renderSummary();
  }

  private joinGroup(id: string, row: Row, gid: string, name: string): void {
    row.groupId = gid;
    let block = this.groups.get(gid);
    if (!block) this.groups.set(gid, (block = createGroup(gid, name)));
    block.members.add(id);
  }

  private leaveGroup(id: string, row: Row, touched: Set<string>): void {
    if (!row.groupId) return;
    this.groups.get(row.groupId)?.members.delete(id);
    touched.add(row.groupId);
    row.groupId = undefined;
  }


  /**
   * Puts every row in its place, in order, moving only the nodes that are out of place: a group's
   * members in its own list (by dest: the same order after every reload, whatever millisecond each
   * was added in), ungrouped rows and groups in the active list (by start) or the finished list
   * (latest first).
   */
  private placeRows(): void {
    type Item = { node: HTMLElement; start: number; end: number; key: string };
    const active: Item[] = [];
    const finished: Item[] = [];
    let anyFinished = false;
    for (const e of this.downloads.values()) {
      anyFinished ||= isFinished(e.status);
      const row = this.rows.get(e.id);
      if (!row || row.groupId) continue;
      (isFinished(e.status) ? finished : active).push({ node: row.el, start: e.start_time, end: e.completion_time ?? e.timestamp, key: e.dest });
    }
    for (const block of this.groups.values()) {
      const members = [...block.members].map((id) => this.downloads.get(id)).filter((e): e is Entry => e !== undefined).sort((a, b) => a.dest.localeCompare(b.dest));
      this.arrange(block.list, members.map((e) => this.rows.get(e.id)!.el));
      const t = block.totals;
      (block.section === 'finished' ? finished : active).push({ node: block.el, start: t?.startTime ?? 0, end: t?.endTime ?? 0, key: members[0]?.dest ?? '' });
    }
    active.sort((a, b) => a.start - b.start || a.key.localeCompare(b.key));
    finished.sort((a, b) => b.end - a.end || a.key.localeCompare(b.key));
    this.arrange(this.els.activeList, active.map((i) => i.node));
    this.arrange(this.els.finishedList, finished.map((i) => i.node));
    this.els.activeEmpty.hidden = active.length > 0;
    this.els.finishedEmpty.hidden = finished.length > 0;
    this.els.clearButton.disabled = !anyFinished;
  }

  /** Whether a node is a current row or group (it belongs somewhere, maybe in another list). */
  private isCurrent(node: HTMLElement): boolean {
    const { id, group } = node.dataset;
    if (id !== undefined) return this.rows.get(id)?.el === node;
    if (group !== undefined) return this.groups.get(group)?.el === node;
    return false;
  }

  private arrange(list: HTMLElement, nodes: HTMLElement[]): void {
    let cursor = list.firstElementChild;
    for (const node of nodes) {
      if (node === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        list.insertBefore(node, cursor); // also moves it out of the other list
      }
    }
    // Whatever is left after the cursor belongs elsewhere (moved there when that list is arranged) or nowhere.
    while (cursor) {
      const next = cursor.nextElementSibling;
      if (!this.isCurrent(cursor as HTMLElement)) cursor.remove();
      cursor = next;
    }
  }

  private renderSummary(): void {
    let count = 0;
    let paused = 0;
    let speed = 0;
    let left = 0;
    let total = 0;
    let done = 0;
    for (const e of this.downloads.values()) {
      if (isFinished(e.status)) continue; // paused ones count: they are still to come
      count++;
      if (e.status === 'paused') paused++;
      if (e.status === 'downloading') speed += e.speed;
      if (e.file_size) {
        total += e.file_size;
        done += Math.min(e.downloaded, e.file_size);
        // What a paused download lacks is not waiting to arrive: it stays out of "left" and the time.
        if (e.status !== 'paused') left += Math.max(0, e.file_size - e.downloaded);
      }
    }
    const parts: string[] = [];
    if (count > 0) {
      parts.push(`${count} active`);
      if (paused > 0) parts.push(`${paused} paused`);
      if (speed > 0) parts.push(formatSpeed(speed));
      if (left > 0) parts.push(`${formatBytes(left)} left`);
      if (speed > 0 && left > 0) parts.push(`about ${formatDuration(left / speed)}`);
    }
    // Non-breaking spaces inside each part: a narrow screen wraps only between parts.
    const text = parts.map((p) => p.replace(/ /g, '\u00a0')).join(' · ');
    if (this.els.summary.textContent !== text) this.els.summary.textContent = text;
    // The tab title carries the overall progress, for a tab kept in the background.
    const title = count > 0 && total > 0 ? `${Math.floor((done / total) * 100)}% · ${this.baseTitle}` : this.baseTitle;
    if (document.title !== title) document.title = title;
  }
}
