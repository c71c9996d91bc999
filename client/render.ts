/**
 * The download lists: one `<li>` per download, keyed by id, created once and updated in place.
 * A field is written only when its text changed, and rows move only when their section or
 * order changed, so an update of one download touches a handful of nodes.
 */
import type { Entry } from '../server/protocol/wire.js';
import { COMMANDS, isFinished, type Command, type DownloadStatus } from '../server/protocol/status.js';
import { formatBytes, formatClock, formatDuration, formatPercent, formatSpeed, hostOf } from './format.js';

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
    els.activeList.addEventListener('click', onClick);
    els.finishedList.addEventListener('click', onClick);
  }

  /**
   * Brings the lists in line with `downloads` for the ids that changed (all of them on `reset`).
   * Call it at most once per frame; the caller batches messages.
   */
  render(downloads: ReadonlyMap<string, Entry>, ids: Iterable<string>, reset: boolean): void {
    this.downloads = downloads;
    let reorder = reset;
    const touched = reset ? new Set([...this.rows.keys(), ...downloads.keys()]) : ids;
    for (const id of touched) {
      const entry = downloads.get(id);
      const row = this.rows.get(id);
      if (!entry) {
        if (row) {
          row.el.remove();
          this.rows.delete(id);
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
      this.updateRow(this.rows.get(id)!, entry);
    }
    if (reorder) this.placeRows();
    this.renderSummary();
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
    return { el: li, badge, name, where, bar, pct, bytes, speed, eta, detail, note, buttons, last: new Map(), section: 'active', status: undefined, commandError: undefined };
  }

  private updateRow(row: Row, e: Entry): void {
    const set = (key: string, node: HTMLElement, text: string): void => {
      if (row.last.get(key) === text) return;
      row.last.set(key, text);
      node.textContent = text;
    };
    const attr = (key: string, apply: () => void, value: string): void => {
      if (row.last.get(key) === value) return;
      row.last.set(key, value);
      apply();
    };

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

  /** Puts every row in its section, in order, moving only the nodes that are out of place. */
  private placeRows(): void {
    const active: Entry[] = [];
    const finished: Entry[] = [];
    for (const e of this.downloads.values()) (isFinished(e.status) ? finished : active).push(e);
    active.sort((a, b) => a.start_time - b.start_time || a.dest.localeCompare(b.dest));
    finished.sort((a, b) => (b.completion_time ?? b.timestamp) - (a.completion_time ?? a.timestamp) || a.dest.localeCompare(b.dest));
    this.arrange(this.els.activeList, active);
    this.arrange(this.els.finishedList, finished);
    this.els.activeEmpty.hidden = active.length > 0;
    this.els.finishedEmpty.hidden = finished.length > 0;
    this.els.clearButton.disabled = finished.length === 0;
  }

  private arrange(list: HTMLElement, entries: Entry[]): void {
    let cursor = list.firstElementChild;
    for (const e of entries) {
      const node = this.rows.get(e.id)!.el;
      if (node === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        list.insertBefore(node, cursor); // also moves it out of the other list
      }
    }
    // Whatever is left after the cursor belongs elsewhere (already moved) or nowhere.
    while (cursor) {
      const next = cursor.nextElementSibling;
      const id = (cursor as HTMLElement).dataset.id;
      if (!id || !this.rows.has(id) || this.rows.get(id)!.el !== cursor) cursor.remove();
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
