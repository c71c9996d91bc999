/**
 * A group's block in the lists (a workflow's models, a repository's files): its `<li class="group">`
 * with a header (bar, speed, time left, counts over its members), the fold toggle, and the list
 * its members' rows sit in.
 */
import type { Entry } from '../server/protocol/wire.js';
import { COMMANDS, type Command } from '../server/protocol/status.js';
import { applier, el, setter } from './dom.js';
import { HINTS, STATUS_LABELS, type Section } from './download-row.js';
import { formatBytes, formatClock, formatDuration, formatPercent, formatSpeed } from './format.js';
import { countsText, groupTotals, type GroupTotals } from './groups.js';

/** Groups longer than this start folded (the header says enough); the user may unfold them. */
const FOLD_ABOVE = 8;

/** The commands a group's header offers for all its members at once (`POST /api/groups/:id/<command>`). */
export type GroupAction = Extract<Command, 'pause' | 'resume' | 'retry' | 'cancel'>;
export const GROUP_ACTIONS: readonly GroupAction[] = ['pause', 'resume', 'retry', 'cancel'];
const GROUP_LABELS: Readonly<Record<GroupAction, string>> = { pause: 'Pause all', resume: 'Resume all', retry: 'Retry all', cancel: 'Cancel all' };

export interface GroupBlock {
  id: string;
  el: HTMLLIElement;
  head: HTMLElement;
  badge: HTMLElement;
  name: HTMLElement;
  where: HTMLElement;
  toggle: HTMLButtonElement;
  /** One button per group command, shown while at least one member's state fits it. */
  buttons: Record<GroupAction, HTMLButtonElement>;
  /** What the last group command said (a refusal, members it could not change); cleared by the next one. */
  note: HTMLElement;
  message: string | undefined;
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

export function createGroup(id: string, name: string): GroupBlock {
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
  const buttons = {} as Record<GroupAction, HTMLButtonElement>;
  for (const action of GROUP_ACTIONS) {
    const b = el('button', `btn btn-small btn-${action}`, GROUP_LABELS[action]);
    b.type = 'button';
    b.dataset.groupAction = action;
    b.setAttribute('aria-label', `${GROUP_LABELS[action]} of ${name}`);
    b.hidden = true;
    buttons[action] = b;
    actions.append(b);
  }
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
  const note = el('p', 'note');
  note.hidden = true;
  head.append(rowHead, bar, stats, detail, note);
  const list = el('ul', 'rows group-rows');
  list.id = `group-${id}-files`;
  list.setAttribute('aria-labelledby', nameEl.id);
  li.append(head, list);
  return { id, el: li, head, badge, name: nameEl, where, toggle, buttons, note, message: undefined, bar, pct, bytes, speed, eta, detail, list, members: new Set(), totals: undefined, section: 'active', expanded: undefined, last: new Map() };
}

export function isExpanded(block: GroupBlock): boolean {
  return block.expanded ?? block.members.size <= FOLD_ABOVE;
}

export function updateToggle(block: GroupBlock): void {
  const expanded = isExpanded(block);
  const n = block.members.size;
  const label = expanded ? 'Hide files' : `Show ${n === 1 ? 'the file' : `${n} files`}`;
  applier(block.last)('toggle', () => {
    block.toggle.textContent = label;
    block.toggle.setAttribute('aria-expanded', String(expanded));
    block.list.hidden = !expanded;
  }, `${expanded}:${label}`);
}

/** Brings a group's header in line with its members; returns whether it changed section. */
export function updateGroup(block: GroupBlock, downloads: ReadonlyMap<string, Entry>): boolean {
  const members = [...block.members].map((id) => downloads.get(id)!).filter(Boolean);
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
  updateToggle(block);
  for (const action of GROUP_ACTIONS) {
    const fits = members.some((e) => COMMANDS[e.status].includes(action));
    attr(`group-${action}`, () => (block.buttons[action].hidden = !fits), String(fits));
  }
  updateGroupNote(block);

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

/** Shows the last group command's message under the header, or hides it. */
export function updateGroupNote(block: GroupBlock): void {
  applier(block.last)('note', () => {
    block.note.textContent = block.message ?? '';
    block.note.hidden = block.message === undefined;
  }, block.message ?? '');
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
