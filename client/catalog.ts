/**
 * The catalog section: model cards grouped by set (`GET /api/catalog`), each with its download
 * button and, while its file downloads, its own progress bar. The bar comes from the same live
 * entries as the lists (matched by `dest` = the model's `path`), so it is restored on load too.
 */
import type { Entry } from '../server/protocol/wire.js';
import { formatBytes, formatPercent } from './format.js';
import { isFinished } from '../server/protocol/status.js';
import { el } from './dom.js';
import { STATUS_LABELS } from './download-row.js';

export interface CatalogModel {
  setId: string;
  id: string;
  name: string;
  url: string;
  /** `<folder>/<file>` under MODELS_DIR: the `dest` its download gets. */
  path: string;
  description: string;
  onDisk: boolean;
  gated: boolean;
}

export interface CatalogSet {
  id: string;
  name: string;
  models: CatalogModel[];
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const obj = (v: unknown): Record<string, unknown> | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/** Items of a collection given either as an array of objects with `id` or as an object keyed by id. */
function items(v: unknown): Array<[string, Record<string, unknown>]> {
  if (Array.isArray(v)) return v.map((x, i) => [str(obj(x)?.id) || String(i), obj(x) ?? {}]);
  return Object.entries(obj(v) ?? {}).map(([k, x]) => [k, obj(x) ?? {}]);
}

/**
 * Reads the catalog answer. Accepts the file's own shape (`{ <set>: { name, models: { <id>: model } } }`),
 * the same under a `catalog` or `sets` key, and arrays of sets/models with `id` fields. A model is
 * on disk when it says so by `on_disk`, `exists`, `installed` or `downloaded`.
 */
export function parseCatalog(body: unknown): CatalogSet[] {
  const root = obj(body);
  const source = root && ('sets' in root ? root.sets : 'catalog' in root ? root.catalog : root);
  const sets: CatalogSet[] = [];
  for (const [setId, set] of items(source)) {
    const models: CatalogModel[] = [];
    for (const [id, m] of items(set.models)) {
      const path = str(m.path) || (str(m.folder) && str(m.filename) ? `${str(m.folder)}/${str(m.filename)}` : '');
      if (!path) continue;
      models.push({
        setId,
        id,
        name: str(m.name) || id,
        url: str(m.url),
        path,
        description: str(m.description),
        onDisk: Boolean(m.on_disk ?? m.exists ?? m.installed ?? m.downloaded),
        gated: Boolean(m.gated),
      });
    }
    if (models.length > 0) sets.push({ id: setId, name: str(set.name) || setId, models });
  }
  return sets;
}

interface Card {
  model: CatalogModel;
  el: HTMLElement;
  button: HTMLButtonElement;
  state: HTMLElement;
  bar: HTMLProgressElement;
  note: HTMLElement;
  last: string;
}

/** Starts a catalog model; rejects with an Error whose message the card shows. */
export type CatalogDownload = (model: CatalogModel) => Promise<void>;

export class CatalogView {
  private readonly cards = new Map<string, Card>();

  constructor(
    private readonly section: HTMLElement,
    private readonly container: HTMLElement,
    private readonly onDownload: CatalogDownload,
  ) {}

  /** Shows the catalog (or hides the section when there is none). */
  setCatalog(sets: CatalogSet[] | undefined, downloads: ReadonlyMap<string, Entry>): void {
    this.cards.clear();
    this.container.replaceChildren();
    this.section.hidden = !sets || sets.length === 0;
    if (!sets) return;
    for (const set of sets) {
      const group = el('section', 'cat-set');
      group.append(el('h3', 'cat-set-name', set.name));
      const grid = el('div', 'cards');
      for (const model of set.models) grid.append(this.createCard(model));
      group.append(grid);
      this.container.append(group);
    }
    this.render(downloads);
  }

  /** Updates every card from the live entries; cheap when nothing changed. */
  render(downloads: ReadonlyMap<string, Entry>): void {
    if (this.cards.size === 0) return;
    const byDest = new Map<string, Entry>();
    for (const e of downloads.values()) byDest.set(e.dest, e);
    for (const card of this.cards.values()) this.updateCard(card, byDest.get(card.model.path));
  }

  private createCard(model: CatalogModel): HTMLElement {
    const card = el('article', 'card');
    card.dataset.path = model.path;
    const head = el('div', 'card-head');
    head.append(el('h4', 'card-name', model.name));
    if (model.gated) head.append(el('span', 'tag', 'gated'));
    const path = el('code', 'card-path', model.path);
    const desc = el('p', 'card-desc', model.description);
    desc.hidden = model.description === '';
    const foot = el('div', 'card-foot');
    const state = el('span', 'card-state');
    const button = el('button', 'btn btn-small', 'Download');
    button.type = 'button';
    button.setAttribute('aria-label', `Download ${model.name}`);
    foot.append(state, button);
    const bar = el('progress', 'bar');
    bar.max = 1000;
    bar.hidden = true;
    bar.setAttribute('aria-label', `Progress of ${model.name}`);
    const note = el('p', 'note');
    note.hidden = true;
    note.dataset.tone = 'error';
    card.append(head, path, desc, bar, foot, note);
    const c: Card = { model, el: card, button, state, bar, note, last: '' };
    button.addEventListener('click', () => {
      button.disabled = true;
      note.hidden = true;
      this.onDownload(model)
        .catch((err: unknown) => {
          note.textContent = (err as Error).message;
          note.hidden = false;
        })
        .finally(() => {
          button.disabled = false;
        });
    });
    this.cards.set(`${model.setId}/${model.id}`, c);
    return card;
  }

  private updateCard(card: Card, e: Entry | undefined): void {
    const active = e !== undefined && !isFinished(e.status);
    const onDisk = e?.status === 'completed' || (card.model.onDisk && !active && e?.status !== 'error');
    const value = active && e.file_size ? Math.round((e.downloaded / e.file_size) * 1000) : -1;
    const key = `${e?.status}|${onDisk}|${value}|${e?.progress}`;
    if (card.last === key) return;
    card.last = key;
    card.el.dataset.status = e?.status ?? (onDisk ? 'completed' : 'none');
    card.bar.hidden = !active;
    if (active) {
      if (value < 0) card.bar.removeAttribute('value');
      else card.bar.value = value;
    }
    card.button.hidden = active || onDisk;
    card.button.textContent = e?.status === 'error' || e?.status === 'cancelled' ? 'Retry' : 'Download';
    card.state.textContent = active
      ? `${STATUS_LABELS[e.status]}${e.file_size ? ` · ${formatPercent(e.progress)} of ${formatBytes(e.file_size)}` : ''}`
      : onDisk
        ? 'On disk'
        : e?.status === 'error'
          ? 'Failed'
          : '';
  }
}
