/**
 * The Workflow section: a ComfyUI workflow (a `.json` file, a `.png` saved by ComfyUI, or pasted
 * JSON) → `POST /api/workflows/plan` → one table row per model it needs. Rows of models being
 * downloaded follow the live entries, as the lists do (plan.ts says which entry a row follows);
 * "Download N missing" posts the same workflow to `POST /api/workflows/download`, which starts
 * them as one group; a model without a known source takes a pasted URL.
 *
 * The plan (and the workflow when it is small) is kept in sessionStorage, so a reload of the tab
 * shows the same table; what it says of downloads always comes from the server's entries.
 */
import type { AddRequest, Entry, ErrorInfo, GroupRef } from '../server/protocol/wire.js';
import { ApiError, type Api } from './api.js';
import { formatBytes, formatDuration, formatPercent, formatSpeed, hostOf } from './format.js';
import { entryOf, fetchRequest, fold, parsePlan, SOURCE_LABELS, toDownload, viewOf, type ModelView, type Plan, type PlannedModel } from './plan.js';
import { el, STATUS_LABELS } from './render.js';

/** The server's limits (server/api/workflow-routes.ts), checked here first to spare the upload. */
const MAX_JSON_BYTES = 16 * 1024 * 1024;
const MAX_PNG_BYTES = 64 * 1024 * 1024;
/** A workflow up to this size is kept with the plan, so "Download" still works after a reload. */
const KEEP_SOURCE_CHARS = 2 * 1024 * 1024;
const STORE_KEY = 'model-downloader.workflow';
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export interface WorkflowElements {
  section: HTMLElement;
  name: HTMLElement;
  hint: HTMLElement;
  file: HTMLInputElement;
  choose: HTMLButtonElement;
  pasteToggle: HTMLButtonElement;
  close: HTMLButtonElement;
  pasteForm: HTMLFormElement;
  text: HTMLTextAreaElement;
  msg: HTMLElement;
  plan: HTMLElement;
  counts: HTMLElement;
  download: HTMLButtonElement;
  rows: HTMLElement;
}

/** The workflow as it is sent: the file's bytes (PNG) or text (JSON). */
interface Source {
  type: 'application/json' | 'image/png';
  body: Blob | string;
  /** The file's name, sent as `?name=`. */
  name?: string;
}

interface Current {
  plan: Plan;
  /** The workflow, to post again for "Download"; gone after a reload when it was too big to keep. */
  source?: Source;
  kept?: StoredSource;
  /** What the section calls it: the plan's name, or where it came from. */
  label: string;
}

interface PlanRow {
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

type AddAnswer = { status?: string; download?: Entry; group?: GroupRef; downloads?: Entry[]; skipped?: Array<{ folder: string; filename: string; error: ErrorInfo }> };
type DownloadAnswer = { group: GroupRef; models: unknown; downloads: Entry[]; skipped?: unknown[] };

const STATE_LABELS = { installed: 'Installed', missing: 'Missing', no_source: 'No source', failed: 'Failed' } as const;

export class WorkflowView {
  private current: Current | undefined;
  private readonly rows = new Map<string, PlanRow>();
  private downloads: ReadonlyMap<string, Entry> = new Map();
  private synced = false;
  /** Bumped by each workflow opened: the answer to an older one is dropped. */
  private generation = 0;
  private downloading = false;

  constructor(
    private readonly els: WorkflowElements,
    private readonly api: Api,
  ) {
    els.choose.addEventListener('click', () => els.file.click());
    els.file.addEventListener('change', () => {
      const file = els.file.files?.[0];
      if (file) void this.openFile(file);
      els.file.value = ''; // the same file again is a new choice
    });
    els.pasteToggle.addEventListener('click', () => this.showPaste(Boolean(els.pasteForm.hidden)));
    els.pasteForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = els.text.value.trim();
      if (!text) {
        els.text.setAttribute('aria-invalid', 'true');
        this.message('Paste the JSON of a workflow first (in ComfyUI: Workflow → Export).', 'error');
        return;
      }
      els.text.removeAttribute('aria-invalid');
      void this.open({ type: 'application/json', body: text }, 'Pasted workflow');
    });
    els.close.addEventListener('click', () => {
      this.generation++;
      this.setCurrent(undefined);
      this.message('', '');
      els.choose.focus();
    });
    els.download.addEventListener('click', () => void this.downloadMissing());
    els.rows.addEventListener('submit', (event) => {
      event.preventDefault();
      const dest = (event.target as Element).closest<HTMLElement>('tr[data-dest]')?.dataset.dest;
      if (dest) void this.fetchFromUrl(dest);
    });
    els.rows.addEventListener('click', (event) => {
      const button = (event.target as Element).closest<HTMLButtonElement>('button[data-action="retry"]');
      const dest = button?.closest<HTMLElement>('tr[data-dest]')?.dataset.dest;
      if (dest) void this.retry(dest);
    });
    this.acceptDrops();
    this.restore();
  }

  /** Brings the table in line with the live entries; cheap when no plan is shown. */
  render(downloads: ReadonlyMap<string, Entry>, synced: boolean): void {
    this.downloads = downloads;
    this.synced = synced;
    const current = this.current;
    if (!current) return;
    const byDest = new Map<string, Entry>();
    for (const e of downloads.values()) {
      const seen = byDest.get(e.dest);
      if (!seen || e.start_time >= seen.start_time) byDest.set(e.dest, e);
    }
    let changed = false;
    const views: ModelView[] = [];
    current.plan.models = current.plan.models.map((model) => {
      const view = viewOf(model, entryOf(model, downloads, byDest), synced);
      views.push(view);
      const next = fold(model, view);
      if (next !== model) changed = true;
      this.updateRow(this.rows.get(model.dest), next, view);
      return next;
    });
    if (changed) this.save();
    this.renderHead(current, views);
  }

  // ---- opening a workflow ------------------------------------------------------------------

  private acceptDrops(): void {
    const hasFiles = (event: DragEvent): boolean => [...(event.dataTransfer?.types ?? [])].includes('Files');
    let depth = 0;
    const mark = (on: boolean): void => {
      if (on) this.els.section.dataset.drag = 'on';
      else delete this.els.section.dataset.drag;
    };
    // Files may be dropped anywhere on the page: a browser would otherwise open them in the tab.
    window.addEventListener('dragenter', (event) => {
      if (!hasFiles(event)) return;
      depth++;
      mark(true);
    });
    window.addEventListener('dragleave', (event) => {
      if (!hasFiles(event)) return;
      depth = Math.max(0, depth - 1);
      if (depth === 0) mark(false);
    });
    window.addEventListener('dragover', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
    });
    window.addEventListener('drop', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth = 0;
      mark(false);
      const file = event.dataTransfer?.files[0];
      if (!file) return;
      this.els.section.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      void this.openFile(file);
    });
  }

  /** A dropped or chosen file: a PNG by its signature, else JSON by its name or first character. */
  async openFile(file: File): Promise<void> {
    const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
    const isPng = PNG_SIGNATURE.every((b, i) => head[i] === b);
    const firstChar = new TextDecoder().decode(head).trimStart()[0];
    const looksJson = /\.json$/i.test(file.name) || file.type === 'application/json' || firstChar === '{' || firstChar === '[';
    if (!isPng && !looksJson) {
      this.message(`${file.name} is neither a workflow .json nor a PNG saved by ComfyUI.`, 'error');
      return;
    }
    const limit = isPng ? MAX_PNG_BYTES : MAX_JSON_BYTES;
    if (file.size > limit) {
      this.message(`${file.name} is ${formatBytes(file.size)}; a workflow ${isPng ? 'PNG' : 'JSON file'} can be at most ${formatBytes(limit)}.`, 'error');
      return;
    }
    await this.open({ type: isPng ? 'image/png' : 'application/json', body: file, name: file.name }, file.name);
  }

  private async open(source: Source, label: string): Promise<void> {
    const generation = ++this.generation;
    this.message(`Reading ${label}…`, 'note');
    this.els.section.setAttribute('aria-busy', 'true');
    try {
      const { body } = await this.api.send<unknown>('POST', this.path('/api/workflows/plan', source), source.body, source.type);
      if (generation !== this.generation) return;
      const plan = parsePlan(body);
      const kept = await storable(source);
      if (generation !== this.generation) return;
      this.showPaste(false);
      this.els.text.value = '';
      this.setCurrent({ plan, source, ...(kept ? { kept } : {}), label: plan.name ?? label });
      this.message('', '');
    } catch (err) {
      if (generation !== this.generation) return;
      this.message(`${label}: ${(err as Error).message}`, 'error');
    } finally {
      if (generation === this.generation) this.els.section.removeAttribute('aria-busy');
    }
  }

  private path(route: string, source: Source): string {
    return source.name ? `${route}?name=${encodeURIComponent(source.name)}` : route;
  }

  // ---- actions ------------------------------------------------------------------------------

  private async downloadMissing(): Promise<void> {
    const current = this.current;
    if (!current || this.downloading) return;
    if (!current.source) {
      this.message(`Open ${current.label} again to download its models: the page was reloaded, and the file was too large to keep.`, 'error');
      return;
    }
    this.downloading = true;
    this.els.download.disabled = true;
    try {
      const { body } = await this.api.send<DownloadAnswer>('POST', this.path('/api/workflows/download', current.source), current.source.body, current.source.type);
      if (this.current !== current) return;
      const models = parsePlan({ models: body.models, missing_bytes: 0 }).models;
      if (models.length > 0) current.plan.models = models;
      this.save();
      this.syncRows();
      const n = body.downloads?.length ?? 0;
      const skipped = Array.isArray(body.skipped) ? body.skipped.length : 0;
      const started = n === 0 ? 'Nothing was started' : `Started ${n} download${n === 1 ? '' : 's'} as the group “${body.group.name}”`;
      this.message(`${started}.${skipped ? ` ${skipped} could not start: see ${skipped === 1 ? 'its row' : 'their rows'}.` : ''}`, skipped || n === 0 ? 'note' : 'ok');
    } catch (err) {
      if (this.current === current) this.message((err as Error).message, 'error');
    } finally {
      this.downloading = false;
      this.els.download.disabled = false;
      this.render(this.downloads, this.synced);
    }
  }

  /** A model without a source: the URL the user pasted, into the model's own folder. */
  private async fetchFromUrl(dest: string): Promise<void> {
    const current = this.current;
    const model = current?.plan.models.find((m) => m.dest === dest);
    const row = this.rows.get(dest);
    if (!current || !model || !row || row.busy) return;
    const url = row.url.value.trim();
    if (!url) {
      this.rowError(row, 'Paste the URL of the model file first.');
      row.url.focus();
      return;
    }
    const request: AddRequest = fetchRequest(model, url);
    row.busy = true;
    row.getButton.disabled = true;
    this.rowError(row, undefined);
    try {
      const { body } = await this.api.request<AddAnswer>('POST', '/api/downloads', request);
      if (body.download) {
        this.link(current, dest, body.download.id);
        row.url.value = '';
      } else if (body.group) {
        // A repository or folder URL: its files went under the folder, not to this model's name.
        this.rowError(row, `That URL is a repository: started ${body.downloads?.length ?? 0} files of ${body.group.name}. Paste the URL of this one file instead.`);
      }
    } catch (err) {
      this.rowError(row, (err as Error).message);
    } finally {
      row.busy = false;
      row.getButton.disabled = false;
      this.render(this.downloads, this.synced);
    }
  }

  private async retry(dest: string): Promise<void> {
    const current = this.current;
    const model = current?.plan.models.find((m) => m.dest === dest);
    const row = this.rows.get(dest);
    if (!model?.download_id || !row || row.busy) return;
    row.busy = true;
    row.retry.disabled = true;
    this.rowError(row, undefined);
    try {
      await this.api.request('POST', `/api/downloads/${encodeURIComponent(model.download_id)}/retry`);
    } catch (err) {
      this.rowError(row, err instanceof ApiError ? err.message : String(err));
    } finally {
      row.busy = false;
      row.retry.disabled = false;
      this.render(this.downloads, this.synced);
    }
  }

  private link(current: Current, dest: string, id: string): void {
    current.plan.models = current.plan.models.map((m) => (m.dest === dest ? { ...m, download_id: id, state: 'active' } : m));
    this.save();
  }

  private rowError(row: PlanRow, text: string | undefined): void {
    row.requestError = text;
    if (text === undefined) row.url.removeAttribute('aria-invalid');
    else if (!row.get.hidden) row.url.setAttribute('aria-invalid', 'true');
    const current = this.current;
    const model = current?.plan.models.find((m) => m.dest === row.el.dataset.dest);
    if (model) this.renderNote(row, model, undefined);
  }

  // ---- drawing ------------------------------------------------------------------------------

  private setCurrent(current: Current | undefined): void {
    this.current = current;
    this.save();
    const { els } = this;
    els.section.dataset.view = current ? 'plan' : 'empty';
    els.plan.hidden = !current;
    els.hint.hidden = Boolean(current);
    els.name.hidden = !current;
    els.close.hidden = !current;
    els.name.textContent = current?.label ?? '';
    els.choose.textContent = current ? 'Open another…' : 'Choose a file…';
    this.rows.clear();
    els.rows.replaceChildren();
    if (current) this.syncRows();
  }

  /** One row per model of the plan, in its order. */
  private syncRows(): void {
    const current = this.current;
    if (!current) return;
    const wanted = new Set(current.plan.models.map((m) => m.dest));
    for (const [dest, row] of this.rows) {
      if (wanted.has(dest)) continue;
      row.el.remove();
      this.rows.delete(dest);
    }
    for (const model of current.plan.models) {
      let row = this.rows.get(model.dest);
      if (!row) this.rows.set(model.dest, (row = this.createRow(model)));
      this.els.rows.append(row.el); // in the plan's order
    }
    this.render(this.downloads, this.synced);
  }

  private createRow(model: PlannedModel): PlanRow {
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

  private updateRow(row: PlanRow | undefined, m: PlannedModel, view: ModelView): void {
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
    this.renderNote(row, m, view);
  }

  /** The row's note: a refused request, the download's failure, why the service refuses the name, or gating. */
  private renderNote(row: PlanRow, m: PlannedModel, view: ModelView | undefined): void {
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

  private renderHead(current: Current, views: ModelView[]): void {
    const { els } = this;
    const models = current.plan.models;
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

  private showPaste(show: boolean): void {
    this.els.pasteForm.hidden = !show;
    this.els.pasteToggle.setAttribute('aria-expanded', String(show));
    if (show) this.els.text.focus();
  }

  private message(text: string, tone: 'error' | 'ok' | 'note' | ''): void {
    const { msg } = this.els;
    msg.textContent = text;
    msg.dataset.tone = tone;
    msg.hidden = text === '';
  }

  // ---- kept across a reload of the tab -------------------------------------------------------

  private save(): void {
    const current = this.current;
    try {
      if (!current) sessionStorage.removeItem(STORE_KEY);
      else sessionStorage.setItem(STORE_KEY, JSON.stringify({ plan: current.plan, label: current.label, ...(current.kept ? { source: current.kept } : {}) }));
    } catch {
      // storage full or disabled: the table lives as long as the page
    }
  }

  private restore(): void {
    type Stored = { plan?: unknown; label?: unknown; source?: unknown } | null;
    let stored: Stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(STORE_KEY) ?? 'null') as Stored;
    } catch {
      // unreadable: nothing to restore
    }
    if (!stored || typeof stored !== 'object') return;
    let plan: Plan;
    try {
      plan = parsePlan(stored.plan);
    } catch {
      return;
    }
    const kept = readStored(stored.source);
    const source = kept && fromStored(kept);
    this.setCurrent({ plan, label: typeof stored.label === 'string' ? stored.label : plan.name ?? 'Workflow', ...(kept && source ? { kept, source } : {}) });
  }
}

/** A workflow as sessionStorage keeps it: JSON text, or a PNG as a data: URL. */
interface StoredSource {
  type: Source['type'];
  body: string;
  name?: string;
}

/** The stored form of a workflow small enough to keep; undefined for a bigger one. */
async function storable(source: Source): Promise<StoredSource | undefined> {
  const name = source.name ? { name: source.name } : {};
  const { body } = source;
  if (typeof body === 'string') return body.length <= KEEP_SOURCE_CHARS ? { type: source.type, body, ...name } : undefined;
  // A data: URL is 4/3 the size of the bytes.
  if (body.size > (source.type === 'image/png' ? (KEEP_SOURCE_CHARS * 3) / 4 : KEEP_SOURCE_CHARS)) return undefined;
  try {
    if (source.type === 'application/json') return { type: source.type, body: await body.text(), ...name };
    const url = await new Promise<string>((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(body);
    });
    return { type: source.type, body: url, ...name };
  } catch {
    return undefined;
  }
}

function readStored(value: unknown): StoredSource | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const { type, body, name } = value as Record<string, unknown>;
  if ((type !== 'application/json' && type !== 'image/png') || typeof body !== 'string') return undefined;
  return { type, body, ...(typeof name === 'string' ? { name } : {}) };
}

function fromStored(kept: StoredSource): Source | undefined {
  const name = kept.name ? { name: kept.name } : {};
  if (kept.type === 'application/json') return { type: kept.type, body: kept.body, ...name };
  const blob = dataUrlBlob(kept.body);
  return blob ? { type: kept.type, body: blob, ...name } : undefined;
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

function dataUrlBlob(url: string): Blob | undefined {
  const match = /^data:([^;,]+)?;base64,(.*)$/s.exec(url);
  if (!match) return undefined;
  try {
    const binary = atob(match[2]!);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new Blob([bytes], { type: match[1] ?? 'image/png' });
  } catch {
    return undefined;
  }
}
