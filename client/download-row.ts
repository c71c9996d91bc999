/**
 * One download's row in the lists: its `<li>` (badge, name, buttons, bar, stats, note), built once
 * and brought in line with the download's entry, writing only the fields whose text changed; the
 * status labels and hints it shows, which the group headers and the workflow table use too.
 * In fleet mode the row also shows which instance has the download, greys it while that instance
 * is silent, and says what its buttons do with another instance's download (texts in fleet.ts).
 */
import type { Entry } from '../server/protocol/wire.js';
import { COMMANDS, isFinished, type Command, type DownloadStatus } from '../server/protocol/status.js';
import { applier, el, setter } from './dom.js';
import { actionHint, staleNote, type FleetInfo } from './fleet.js';
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

export type Section = 'active' | 'finished';

export interface Row {
  el: HTMLLIElement;
  badge: HTMLElement;
  name: HTMLElement;
  where: HTMLElement;
  /** Fleet mode: the instance that has the download (hidden on a lone server). */
  instance: HTMLElement;
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
  /**
   * Fleet mode: a command handed to the instance that has the download, shown while the download
   * is still in the state (and with the instance) it had when the command was given.
   */
  commandNote: { text: string; status: DownloadStatus; instance: string | undefined } | undefined;
  /** The group the download belongs to. */
  groupId: string | undefined;
}

export function createRow(entry: Entry): Row {
  const li = el('li', 'row');
  li.dataset.id = entry.id;
  const badge = el('span', 'badge');
  const title = el('div', 'row-title');
  const name = el('span', 'name');
  const whereLine = el('span', 'where');
  const instance = el('span', 'instance');
  instance.hidden = true;
  const where = el('span', 'where-text');
  whereLine.append(instance, where);
  title.append(name, whereLine);
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
  return {
    el: li,
    badge,
    name,
    where,
    instance,
    bar,
    pct,
    bytes,
    speed,
    eta,
    detail,
    note,
    buttons,
    last: new Map(),
    section: 'active',
    status: undefined,
    commandError: undefined,
    commandNote: undefined,
    groupId: undefined,
  };
}

/** Brings the row in line with `e`; `fleet`: the last answer of `GET /api/fleet`, in fleet mode. */
export function updateRow(row: Row, e: Entry, fleet?: FleetInfo): void {
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
  updateFleet(row, e, fleet);

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

  // The note: a refused command, a command handed to another instance, a silent instance, the
  // failure, or the server's warning while it retries.
  const handed = row.commandNote;
  if (handed && (handed.status !== e.status || handed.instance !== e.instance)) row.commandNote = undefined;
  const silent = staleNote(e, fleet);
  let note = '';
  let tone = '';
  if (row.commandError) {
    note = row.commandError;
    tone = 'error';
  } else if (row.commandNote) {
    note = row.commandNote.text;
    tone = 'info';
  } else if (silent) {
    note = e.error ? `${silent}\n${e.error.message}` : silent;
    tone = 'stale';
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

/** Fleet mode: the instance's badge, the greying of a silent instance's row, what the buttons will do. */
function updateFleet(row: Row, e: Entry, fleet: FleetInfo | undefined): void {
  const set = setter(row.last);
  const attr = applier(row.last);
  const name = e.instance ?? '';
  const self = name !== '' && name === fleet?.instance;
  set('instance', row.instance, name);
  const badge = `${name}|${self}|${e.instance_stale === true}`;
  attr('instance-badge', () => {
    row.instance.hidden = name === '';
    if (name) {
      row.instance.dataset.self = String(self);
      row.instance.title = `On instance ${name}${self ? ", this page's server" : ''}${e.instance_stale ? ' (silent)' : ''}`;
    }
    if (e.instance_stale) row.el.dataset.stale = 'true';
    else delete row.el.dataset.stale;
  }, badge);
  for (const action of ALL_ACTIONS) {
    const hint = actionHint(action, e, fleet) ?? '';
    attr(`hint-${action}`, () => {
      if (hint) row.buttons[action].title = hint;
      else row.buttons[action].removeAttribute('title');
    }, hint);
  }
}

export const HINTS: Partial<Record<DownloadStatus, string>> = {
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
