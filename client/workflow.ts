/**
 * The Workflow section: a ComfyUI workflow (a `.json` file, a `.png` saved by ComfyUI, or pasted
 * JSON) → `POST /api/workflows/plan` → one table row per model it needs. Rows of models being
 * downloaded follow the live entries, as the lists do (plan.ts says which entry a row follows);
 * "Download N missing" posts the same workflow to `POST /api/workflows/download`, which starts
 * them as one group; a model without a known source takes a pasted URL.
 *
 * The plan (and the workflow when it is small) is kept in sessionStorage, so a reload of the tab
 * shows the same table; what it says of downloads always comes from the server's entries.
 *
 * This file owns the section's controller (its buttons, the requests, the current plan and its
 * saving); workflow-intake.ts reads the files, workflow-table.ts draws the table.
 */
import type { AddRequest, Entry, ErrorInfo, GroupRef } from '../server/protocol/wire.js';
import { ApiError, type Api } from './api.js';
import { entryOf, fetchRequest, fold, parsePlan, viewOf, type ModelView, type Plan } from './plan.js';
import { acceptDrops, fromStored, readStored, sourceOf, storable, STORE_KEY, type Source, type StoredSource } from './workflow-intake.js';
import { createRow, renderHead, renderNote, updateRow, type PlanRow } from './workflow-table.js';

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

interface Current {
  plan: Plan;
  /** The workflow, to post again for "Download"; gone after a reload when it was too big to keep. */
  source?: Source;
  kept?: StoredSource;
  /** What the section calls it: the plan's name, or where it came from. */
  label: string;
}

type AddAnswer = { status?: string; download?: Entry; group?: GroupRef; downloads?: Entry[]; skipped?: Array<{ folder: string; filename: string; error: ErrorInfo }> };
type DownloadAnswer = { group: GroupRef; models: unknown; downloads: Entry[]; skipped?: unknown[] };

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
    acceptDrops(els.section, (file) => void this.openFile(file));
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
      updateRow(this.rows.get(model.dest), next, view);
      return next;
    });
    if (changed) this.save();
    renderHead(this.els, current.plan.models, views);
  }

  // ---- opening a workflow ------------------------------------------------------------------

  /** A dropped or chosen file, opened when it looks like a workflow. */
  async openFile(file: File): Promise<void> {
    const source = await sourceOf(file);
    if (typeof source === 'string') {
      this.message(source, 'error');
      return;
    }
    await this.open(source, file.name);
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
    if (model) renderNote(row, model, undefined);
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
      if (!row) this.rows.set(model.dest, (row = createRow(model)));
      this.els.rows.append(row.el); // in the plan's order
    }
    this.render(this.downloads, this.synced);
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
