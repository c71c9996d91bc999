/**
 * The Workflow section's plan table: one row per model of the plan (name, the nodes that load it,
 * folder, size, a status cell with badge, bar, Retry, a URL form for a model without a source and a
 * note), updated in place from the model and its live entry; and the counts and the "Download N
 * missing" button above it.
 */
import { el } from './dom.js';
import { STATUS_LABELS } from './download-row.js';
import { formatBytes, formatDuration, formatPercent, formatSpeed, hostOf } from './format.js';
import { SOURCE_LABELS, toDownload, type ModelView, type PlannedModel } from './plan.js';
import type { WorkflowElements } from './workflow.js';

export interface PlanRow {
  el: HTMLTableRowElement;
  name: HTMLElement;
  nodes: HTMLElement;
  folder: HTMLElement;
  size: HTMLElement;
  badge: HTMLElement;
  detail: HTMLElement;
  retry: HTMLButtonElement;
  bar: HTMLProgressElement;
  get: HTMLFormElement;
  url: HTMLInputElement;
  getButton: HTMLButtonElement;
  note: HTMLElement;
  /** A refused Get or Retry, shown until the row's state changes. */
  requestError: string | undefined;
  busy: boolean;
  shown: string | undefined;
  last: Map<string, string>;
}

const STATE_LABELS = { installed: 'Installed', missing: 'Missing', no_source: 'No source', failed: 'Failed' } as const;

export function createRow(model: PlannedModel): PlanRow {
  const tr = el('tr', 'wf-row');
  tr.dataset.dest = model.dest;
  const head = el('th', 'wf-model');
  head.scope = 'row';
  const name = el('span', 'wf-model-name', model.name);
  name.title = model.dest;
  const nodes = el('span', 'wf-nodes');
  head.append(name, nodes);
  const folder = el('td', 'wf-folder', model.folder);
  const size = el('td', 'wf-size num');
  const status = el('td', 'wf-status');
  const line = el('div', 'wf-status-line');
  const badge = el('span', 'badge');
  const detail = el('span', 'wf-detail');
  const retry = el('button', 'btn btn-small', 'Retry');
  retry.type = 'button';
  retry.dataset.action = 'retry';
  retry.setAttribute('aria-label', `Retry ${model.name}`);
  retry.hidden = true;
  line.append(badge, detail, retry);
  const bar = el('progress', 'bar');
  bar.max = 1000;
  bar.hidden = true;
  bar.setAttribute('aria-label', `Progress of ${model.name}`);
  const get = el('form', 'wf-get');
  get.noValidate = true;
  get.hidden = true;
  const url = el('input');
  url.type = 'url';
  url.name = 'url';
  url.inputMode = 'url';
  url.autocomplete = 'off';
  url.spellcheck = false;
  url.placeholder = 'Paste a download URL for this file';
  url.setAttribute('aria-label', `Download URL for ${model.name}`);
  const getButton = el('button', 'btn btn-small', 'Get');
  getButton.type = 'submit';
  getButton.setAttribute('aria-label', `Get ${model.name} from this URL`);
  get.append(url, getButton);
  const note = el('p', 'note');
  note.hidden = true;
  status.append(line, bar, get, note);
  tr.append(head, folder, size, status);
  return { el: tr, name, nodes, folder, size, badge, detail, retry, bar, get, url, getButton, note, requestError: undefined, busy: false, shown: undefined, last: new Map() };
}

export function updateRow(row: PlanRow | undefined, m: PlannedModel, view: ModelView): void {
  if (!row) return;
  const set = (key: string, node: HTMLElement, text: string): void => {
    if (row.last.get(key) === text) return;
    row.last.set(key, text);
    node.textContent = text;
  };
  const e = view.entry;
  const shown = `${view.state}:${e?.status ?? ''}`;
  if (row.shown !== shown) {
    if (row.shown !== undefined) row.requestError = undefined; // a new state: the old refusal no longer applies
    row.shown = shown;
    row.el.dataset.state = view.state;
    if (e) row.el.dataset.status = e.status;
    else delete row.el.dataset.status;
    row.bar.hidden = view.state !== 'active';
    row.get.hidden = view.state !== 'no_source' || m.error !== undefined;
    row.retry.hidden = view.state !== 'failed';
  }
  set('badge', row.badge, view.state !== 'active' ? STATE_LABELS[view.state] : e ? STATUS_LABELS[e.status] : STATUS_LABELS.starting);
  const nodes = m.nodes.map((n) => `${n.type} #${n.id}`);
  set('nodes', row.nodes, nodes.length === 0 ? '' : nodes.length <= 2 ? nodes.join(', ') : `${nodes.slice(0, 2).join(', ')} +${nodes.length - 2}`);
  const size = e?.file_size ?? m.size;
  set('size', row.size, typeof size === 'number' ? formatBytes(size) : '—');
  set('detail', row.detail, detailOf(m, view));
  if (view.state === 'active') {
    const fraction = e && e.file_size ? Math.min(1, e.downloaded / e.file_size) : null;
    const value = e?.status === 'verifying' ? '1000' : fraction === null ? (e?.status === 'queued' || e?.status === 'paused' ? '0' : 'indeterminate') : String(Math.round(fraction * 1000));
    if (row.last.get('bar') !== value) {
      row.last.set('bar', value);
      if (value === 'indeterminate') row.bar.removeAttribute('value');
      else row.bar.value = Number(value);
    }
  }
  renderNote(row, m, view);
}

/** The row's note: a refused request, the download's failure, why the service refuses the name, or gating. */
export function renderNote(row: PlanRow, m: PlannedModel, view: ModelView | undefined): void {
  const state = view?.state ?? row.el.dataset.state;
  let text = '';
  let tone = '';
  if (row.requestError) {
    text = row.requestError;
    tone = 'error';
  } else if (state === 'failed' && view?.entry?.error) {
    text = view.entry.error.message;
    tone = 'error';
  } else if (m.error) {
    text = state === 'installed' ? `It would not be downloaded here: ${m.error.message}` : m.error.message;
    tone = state === 'installed' ? '' : 'error';
  } else if (m.gated && (state === 'missing' || state === 'failed' || state === 'no_source')) {
    text = m.gated;
    tone = 'warn';
  } else if (state === 'active' && view?.entry?.error) {
    text = view.entry.error.message; // the server's warning while it retries
    tone = 'warn';
  }
  const key = `${tone}:${text}`;
  if (row.last.get('note') === key) return;
  row.last.set('note', key);
  row.note.textContent = text;
  row.note.dataset.tone = tone;
  row.note.hidden = text === '';
}

/** The counts above the table and the label of its "Download N missing" button. */
export function renderHead(els: Pick<WorkflowElements, 'counts' | 'download'>, models: PlannedModel[], views: ModelView[]): void {
  const count = (s: ModelView['state']): number => views.filter((v) => v.state === s).length;
  const want = toDownload(models, views);
  const parts: string[] = [`${models.length} model${models.length === 1 ? '' : 's'}`];
  const installed = count('installed');
  if (installed) parts.push(`${installed} installed`);
  if (count('active')) parts.push(`${count('active')} downloading`);
  const missing = count('missing');
  if (missing) parts.push(`${missing} missing`);
  if (count('failed')) parts.push(`${count('failed')} failed`);
  if (count('no_source')) parts.push(`${count('no_source')} without a source`);
  let text = models.length === 0 ? 'This workflow loads no model files.' : parts.join(' · ');
  if (models.length > 0 && installed === models.length) text += ' — everything it needs is here.';
  if (els.counts.textContent !== text) els.counts.textContent = text;
  els.counts.dataset.tone = models.length > 0 && installed === models.length ? 'ok' : '';

  const bytes = want.bytes > 0 ? ` (${formatBytes(want.bytes)}${want.unknown ? '+' : ''})` : '';
  const label = `Download ${want.count} missing${bytes}`;
  if (els.download.textContent !== label) els.download.textContent = label;
  const title = want.unknown ? `The size of ${want.unknown === 1 ? 'one of them' : `${want.unknown} of them`} is not known yet` : '';
  if (els.download.title !== title) els.download.title = title;
  els.download.hidden = want.count === 0;
}

/** What the status cell says beside the badge. */
function detailOf(m: PlannedModel, view: ModelView): string {
  const e = view.entry;
  switch (view.state) {
    case 'installed':
      if (e) return `in ${e.dest}`;
      return m.found_at ? `found at ${m.found_at}` : `in ${m.dest}`;
    case 'active': {
      if (!e) return 'starting…';
      const parts: string[] = [];
      if (e.file_size) parts.push(formatPercent(e.progress));
      if (e.status === 'downloading') {
        if (e.speed > 0) parts.push(formatSpeed(e.speed));
        if (e.eta !== null) parts.push(`${formatDuration(e.eta)} left`);
      } else if (e.status === 'queued') parts.push('waiting for a free slot');
      else if (e.status === 'verifying') parts.push('checking sha256…');
      else if (e.status === 'starting') parts.push('connecting…');
      return parts.join(' · ');
    }
    case 'missing': {
      const from = m.source && m.url ? `from the ${SOURCE_LABELS[m.source]} · ${hostOf(m.url)}` : '';
      return view.cancelled ? `cancelled${from ? ` · ${from}` : ''}` : from;
    }
    case 'no_source':
      return view.cancelled ? 'cancelled' : m.error ? '' : 'not in the workflow, the catalog or the model list';
    case 'failed':
      return e ? `${formatBytes(e.downloaded)}${e.file_size ? ` of ${formatBytes(e.file_size)}` : ''}` : '';
  }
}
