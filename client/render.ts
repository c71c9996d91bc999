/**
 * The download lists: one `<li>` per download, keyed by id, created once and updated in place.
 * A field is written only when its text changed, and rows move only when their section or
 * order changed, so an update of one download touches a handful of nodes.
 *
 * Downloads of one group (entry field `group`: a workflow's models, a repository's files) sit
 * together in one `<li class="group">` under a header with the group's own bar, speed, time left
 * and counts: in the active list while one of them is unfinished, then in the finished list.
 */
import type { Entry } from '../server/protocol/wire.js';
import { COMMANDS, isFinished, type Command, type DownloadStatus } from '../server/protocol/status.js';
import { formatBytes, formatClock, formatDuration, formatPercent, formatSpeed, hostOf } from './format.js';
import { countsText, groupTotals, type GroupTotals } from './groups.js';

/** A row's buttons: the commands of the state machine. */
export type RowAction = Command;

export const STATUS_LABELS: Readonly<Record<DownloadStatus, string>> = {
  queued: 'Queued',
  starting: 'Starting',
  downloading: 'Downloading',
  paused: 'Paused',
  verifying: 'Verifying',
  completed: 'Completed',
  error: 'Failed',
  cancelled: 'Cancelled',
};

const ALL_ACTIONS: readonly RowAction[] = ['pause', 'resume', 'retry', 'cancel', 'remove'];
const ACTION_LABELS: Readonly<Record<RowAction, string>> = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', retry: 'Retry', remove: 'Remove' };

/** Small helper: an element with a class and optional text. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

type Section = 'active' | 'finished';

interface Row {
  el: HTMLLIElement;
  badge: HTMLElement;
  name: HTMLElement;
  where: HTMLElement;
  bar: HTMLProgressElement;
  pct: HTMLElement;
  bytes: HTMLElement;
  speed: HTMLElement;
  eta: HTMLElement;
  detail: HTMLElement;
  note: HTMLElement;
  buttons: Record<RowAction, HTMLButtonElement>;
  /** Last text written per field: unchanged fields are not touched. */
  last: Map<string, string>;
  section: Section;
  status: DownloadStatus | undefined;
  /** A failed command's message, shown until the download's state changes. */
  commandError: string | undefined;
  /** The group the download belongs to. */
  groupId: string | undefined;
}

/** Groups longer than this start folded (the header says enough); the user may unfold them. */
const FOLD_ABOVE = 8;

interface GroupBlock {
  id: string;
  el: HTMLLIElement;
  head: HTMLElement;
  badge: HTMLElement;
  name: HTMLElement;
  where: HTMLElement;
  toggle: HTMLButtonElement;
  bar: HTMLProgressElement;
  pct: HTMLElement;
  bytes: HTMLElement;
  speed: HTMLElement;
  eta: HTMLElement;
  detail: HTMLElement;
  list: HTMLUListElement;
  members: Set<string>;
  totals: GroupTotals | undefined;
  section: Section;
  /** The user's choice of the toggle; until then groups of more than FOLD_ABOVE are folded. */
  expanded: boolean | undefined;
  last: Map<string, string>;
}

/** Writes `text` into `node` unless it is what was last written there. */
function setter(last: Map<string, string>): (key: string, node: HTMLElement, text: string) => void {
  return (key, node, text) => {
    if (last.get(key) === text) return;
    last.set(key, text);
    node.textContent = text;
  };
}
/** Runs `apply` unless `value` is what it was last run for. */
function applier(last: Map<string, string>): (key: string, apply: () => void, value: string) => void {
  return (key, apply, value) => {
    if (last.get(key) === value) return;
    last.set(key, value);
    apply();
  };
}

export interface DashboardElements {
  activeList: HTMLElement;
  finishedList: HTMLElement;
  activeEmpty: HTMLElement;
  finishedEmpty: HTMLElement;
  summary: HTMLElement;
  clearButton: HTMLButtonElement;
}

/** Runs a row's command; rejects with an Error whose message is shown in the row. */
export type ActionHandler = (entry: Entry, action: RowAction) => Promise<void>;

export class Dashboard {
  private readonly rows = new Map<string, Row>();
  private readonly groups = new Map<string, GroupBlock>();
  private downloads: ReadonlyMap<string, Entry> = new Map();
  private readonly baseTitle: string;

  constructor(
    private readonly els: DashboardElements,
    private readonly onAction: ActionHandler,
  ) {
    this.baseTitle = document.title;
    const onClick = (event: Event): void => {
      const button = (event.target as Element).closest<HTMLButtonElement>('button[data-action]');
      const li = button?.closest<HTMLElement>('li[data-id]');
      if (!button || !li) return;
      const entry = this.downloads.get(li.dataset.id!);
      const row = this.rows.get(li.dataset.id!);
      if (!entry || !row) return;
      button.disabled = true;
      row.commandError = undefined;
      this.onAction(entry, button.dataset.action as RowAction)
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
      block.expanded = !this.isExpanded(block);
      this.updateToggle(block);
    };
    for (const list of [els.activeList, els.finishedList]) {
      list.addEventListener('click', onClick);
      list.addEventListener('click', onToggle);
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
        this.rows.set(id, this.createRow(entry));
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
      this.updateRow(current, entry);
    }
    for (const gid of groupsTouched) {
      const block = this.groups.get(gid);
      if (!block) continue;
      if (block.members.size === 0) {
        block.el.remove();
        this.groups.delete(gid);
        reorder = true;
      } else if (this.updateGroup(block)) {
        reorder = true;
      }
    }
    if (reorder) this.placeRows();
    this.renderSummary();
  }

  private joinGroup(id: string, row: Row, gid: string, name: string): void {
    row.groupId = gid;
    let block = this.groups.get(gid);
    if (!block) this.groups.set(gid, (block = this.createGroup(gid, name)));
    block.members.add(id);
  }

  private leaveGroup(id: string, row: Row, touched: Set<string>): void {
    if (!row.groupId) return;
    this.groups.get(row.groupId)?.members.delete(id);
    touched.add(row.groupId);
    row.groupId = undefined;
  }

  private createGroup(id: string, name: string): GroupBlock {
    const li = el('li', 'group');
    li.dataset.group = id;
    li.dataset.name = name;
    const head = el('div', 'row group-head');
    const badge = el('span', 'badge');
    const title = el('div', 'row-title');
    const nameEl = el('span', 'name');
    nameEl.id = `group-${id}-name`;
    nameEl.append(groupIcon(), name);
    const where = el('span', 'where');
    title.append(nameEl, where);
    const actions = el('div', 'row-actions');
    const toggle = el('button', 'btn btn-small btn-toggle');
    toggle.type = 'button';
    toggle.dataset.toggle = id;
    toggle.setAttribute('aria-controls', `group-${id}-files`);
    actions.append(toggle);
    const rowHead = el('div', 'row-head');
    rowHead.append(badge, title, actions);
    const bar = el('progress', 'bar');
    bar.max = 1000;
    bar.setAttribute('aria-label', `Progress of ${name}`);
    const stats = el('div', 'stats');
    const pct = el('span', 'pct');
    const bytes = el('span', 'bytes');
    const speed = el('span', 'speed');
    const eta = el('span', 'eta');
    stats.append(pct, bytes, speed, eta);
    const detail = el('div', 'detail');
    head.append(rowHead, bar, stats, detail);
    const list = el('ul', 'rows group-rows');
    list.id = `group-${id}-files`;
    list.setAttribute('aria-labelledby', nameEl.id);
    li.append(head, list);
    return { id, el: li, head, badge, name: nameEl, where, toggle, bar, pct, bytes, speed, eta, detail, list, members: new Set(), totals: undefined, section: 'active', expanded: undefined, last: new Map() };
  }

  private isExpanded(block: GroupBlock): boolean {
    return block.expanded ?? block.members.size <= FOLD_ABOVE;
  }

  private updateToggle(block: GroupBlock): void {
    const expanded = this.isExpanded(block);
    const n = block.members.size;
    const label = expanded ? 'Hide files' : `Show ${n === 1 ? 'the file' : `${n} files`}`;
    applier(block.last)('toggle', () => {
      block.toggle.textContent = label;
      block.toggle.setAttribute('aria-expanded', String(expanded));
      block.list.hidden = !expanded;
    }, `${expanded}:${label}`);
  }

  /** Brings a group's header in line with its members; returns whether it changed section. */
  private updateGroup(block: GroupBlock): boolean {
    const members = [...block.members].map((id) => this.downloads.get(id)!).filter(Boolean);
    const t = groupTotals(members);
    block.totals = t;
    const set = setter(block.last);
    const attr = applier(block.last);
    const section: Section = t.unfinished > 0 ? 'active' : 'finished';
    const moved = section !== block.section;
    block.section = section;
    attr('status', () => {
      block.el.dataset.status = t.status;
      block.head.dataset.status = t.status;
      block.el.dataset.section = section;
      block.head.dataset.section = section;
    }, `${t.status}:${section}`);
    set('badge', block.badge, STATUS_LABELS[t.status]);
    set('where', block.where, countsText(t));
    this.updateToggle(block);

    if (section === 'active') {
      const transferring = t.status === 'downloading' || t.status === 'verifying';
      const barValue = t.total > 0 ? String(Math.round((t.done / t.total) * 1000)) : transferring ? 'indeterminate' : '0';
      attr('bar', () => {
        if (barValue === 'indeterminate') block.bar.removeAttribute('value');
        else block.bar.value = Number(barValue);
      }, barValue);
      set('pct', block.pct, t.total > 0 ? formatPercent((t.done / t.total) * 100) : '');
      const unknown = t.unknownSizes > 0 ? ` + ${t.unknownSizes} of unknown size` : '';
      set('bytes', block.bytes, t.total > 0 ? `${formatBytes(t.done)} / ${formatBytes(t.total)}${unknown}` : '');
      set('speed', block.speed, t.speed > 0 ? formatSpeed(t.speed) : '');
      set('eta', block.eta, t.eta !== null ? `${formatDuration(t.eta)} left` : HINTS[t.status] ?? '');
      set('detail', block.detail, '');
    } else {
      const size = t.done > 0 ? `${formatBytes(t.done)} · ` : '';
      set('detail', block.detail, `${size}${t.failed || t.cancelled ? 'ended' : 'finished'} at ${formatClock(t.endTime)}`);
    }
    return moved;
  }

  private createRow(entry: Entry): Row {
    const li = el('li', 'row');
    li.dataset.id = entry.id;
    const badge = el('span', 'badge');
    const title = el('div', 'row-title');
    const name = el('span', 'name');
    const where = el('span', 'where');
    title.append(name, where);
    const actions = el('div', 'row-actions');
    const buttons = {} as Record<RowAction, HTMLButtonElement>;
    for (const action of ALL_ACTIONS) {
      const b = el('button', `btn btn-small btn-${action}`, ACTION_LABELS[action]);
      b.type = 'button';
      b.dataset.action = action;
      b.hidden = true;
      buttons[action] = b;
      actions.append(b);
    }
    const head = el('div', 'row-head');
    head.append(badge, title, actions);

    const bar = el('progress', 'bar');
    bar.max = 1000;
    const stats = el('div', 'stats');
    const pct = el('span', 'pct');
    const bytes = el('span', 'bytes');
    const speed = el('span', 'speed');
    const eta = el('span', 'eta');
    stats.append(pct, bytes, speed, eta);
    const detail = el('div', 'detail');
    const note = el('p', 'note');
    note.hidden = true;
    li.append(head, bar, stats, detail, note);
    return { el: li, badge, name, where, bar, pct, bytes, speed, eta, detail, note, buttons, last: new Map(), section: 'active', status: undefined, commandError: undefined, groupId: undefined };
  }

  private updateRow(row: Row, e: Entry): void {
    const set = setter(row.last);
    const attr = applier(row.last);

    if (row.status !== e.status) {
      if (row.status !== undefined) row.commandError = undefined; // a new state: the old refusal no longer applies
      row.status = e.status;
      row.el.dataset.status = e.status;
      row.section = isFinished(e.status) ? 'finished' : 'active';
      row.el.dataset.section = row.section;
      set('badge', row.badge, STATUS_LABELS[e.status]);
      const fits = COMMANDS[e.status]; // the buttons that fit the state (the server answers 409 to the others)
      for (const action of ALL_ACTIONS) row.buttons[action].hidden = !fits.includes(action);
    }
    attr('dest', () => (row.el.dataset.dest = e.dest), e.dest);
    set('name', row.name, e.filename);
    attr('title', () => (row.name.title = `${e.dest}\n${e.url}`), `${e.dest}\n${e.url}`);
    set('where', row.where, `${e.folder} · ${hostOf(e.url)}`);
    for (const action of ALL_ACTIONS) {
      attr(`label-${action}`, () => row.buttons[action].setAttribute('aria-label', `${ACTION_LABELS[action]} ${e.filename}`), e.filename);
    }

    const size = e.file_size;
    const active = row.section === 'active';
    if (active) {
      // Finer than the integer `progress`, so the bar glides instead of stepping.
      const fraction = size && size > 0 ? Math.min(1, e.downloaded / size) : null;
      const indeterminate = fraction === null && (e.status === 'downloading' || e.status === 'starting' || e.status === 'verifying');
      const barValue = e.status === 'verifying' ? '1000' : indeterminate ? 'indeterminate' : String(Math.round((fraction ?? 0) * 1000));
      attr('bar', () => {
        if (barValue === 'indeterminate') row.bar.removeAttribute('value');
        else row.bar.value = Number(barValue);
      }, barValue);
      attr('bar-label', () => row.bar.setAttribute('aria-label', `Progress of ${e.filename}`), e.filename);
      set('pct', row.pct, size ? formatPercent(e.progress) : '');
      set('bytes', row.bytes, size ? `${formatBytes(e.downloaded)} / ${formatBytes(size)}` : e.downloaded > 0 ? formatBytes(e.downloaded) : '');
      const transferring = e.status === 'downloading';
      set('speed', row.speed, transferring ? formatSpeed(e.speed) : '');
      set('eta', row.eta, transferring ? (e.eta === null ? '' : `${formatDuration(e.eta)} left`) : HINTS[e.status] ?? '');
      set('detail', row.detail, '');
    } else {
      set('detail', row.detail, finishedDetail(e));
    }

    // The note: a refused command, the failure, or the server's warning while it retries.
    let note = '';
    let tone = '';
    if (row.commandError) {
      note = row.commandError;
      tone = 'error';
    } else if (e.error && e.status === 'error') {
      note = e.error.message;
      tone = 'error';
    } else if (e.error && (e.status === 'starting' || e.status === 'queued' || e.status === 'paused')) {
      note = e.error.message;
      tone = 'warn';
    }
    set('note', row.note, note);
    attr('note-tone', () => {
      row.note.hidden = note === '';
      row.note.dataset.tone = tone;
    }, `${tone}:${note === ''}`);
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

/** Two stacked sheets: the mark of a group header. */
function groupIcon(): SVGSVGElement {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', 'group-icon');
  svg.setAttribute('aria-hidden', 'true');
  for (const [d, cls] of [['M5 2.5h7.5a1 1 0 0 1 1 1V11', 'back'], ['M2.5 5.5a1 1 0 0 1 1-1h6.5a1 1 0 0 1 1 1v7a1 1 0 0 1-1 1H3.5a1 1 0 0 1-1-1z', 'front']] as const) {
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d);
    path.setAttribute('class', cls);
    svg.append(path);
  }
  return svg;
}

const HINTS: Partial<Record<DownloadStatus, string>> = {
  queued: 'waiting for a free slot',
  starting: 'connecting…',
  paused: 'paused',
  verifying: 'checking sha256…',
};

function finishedDetail(e: Entry): string {
  const when = formatClock(e.completion_time ?? e.timestamp);
  switch (e.status) {
    case 'completed':
      return `${formatBytes(e.file_size ?? e.downloaded)} · finished at ${when}`;
    case 'error':
      return e.file_size ? `${formatBytes(e.downloaded)} of ${formatBytes(e.file_size)} · failed at ${when}` : `failed at ${when}`;
    case 'cancelled':
      return e.file_size ? `at ${formatPercent(e.progress)} of ${formatBytes(e.file_size)} · cancelled at ${when}` : `cancelled at ${when}`;
    default:
      return '';
  }
}
