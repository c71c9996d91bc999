/**
 * A workflow's plan on the page (the answer of `POST /api/workflows/plan`, docs/reference.md): its
 * shape as the page reads it, and what each model's row shows once the live entries are taken
 * into account. A row is driven by the same WebSocket state as the lists: the entry of its
 * `download_id`, or an unfinished entry of its `dest`. Pure: no DOM, unit-tested in Node.
 */
import type { AddRequest, Entry } from '../server/protocol/wire.js';
import { isFinished } from '../server/protocol/status.js';

import type { ModelSource, ModelState, Plan, PlannedModel } from '../server/protocol/wire.js';

export type { ModelSource, ModelState, Plan, PlannedModel } from '../server/protocol/wire.js';

const STATES: readonly string[] = ['installed', 'missing', 'active', 'no_source'];
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads a plan answer, keeping the models that have what a row needs; throws when it is not a plan. */
export function parsePlan(body: unknown): Plan {
  if (!isObj(body) || !Array.isArray(body.models)) throw new Error('The server answered something that is not a workflow plan');
  const models = body.models.filter(
    (m): m is PlannedModel => isObj(m) && typeof m.name === 'string' && typeof m.folder === 'string' && typeof m.dest === 'string' && STATES.includes(m.state as string),
  );
  return {
    ...(typeof body.name === 'string' && body.name ? { name: body.name } : {}),
    models: models.map((m) => ({ ...m, nodes: Array.isArray(m.nodes) ? m.nodes : [] })),
    missing_bytes: typeof body.missing_bytes === 'number' ? body.missing_bytes : 0,
  };
}

/**
 * The live entry a model's row follows: its `download_id`'s, else an unfinished download of its
 * `dest` (started from another tab, or before the plan was made). A finished entry of the dest
 * that nobody linked is history from before the plan, not this row's news.
 */
export function entryOf(model: PlannedModel, downloads: ReadonlyMap<string, Entry>, byDest: ReadonlyMap<string, Entry>): Entry | undefined {
  const linked = model.download_id === undefined ? undefined : downloads.get(model.download_id);
  if (linked) return linked;
  const other = byDest.get(model.dest);
  return other && !isFinished(other.status) ? other : undefined;
}

/** What a row shows: the plan's states, plus `failed` for a download that ended in an error. */
export type ShownState = ModelState | 'failed';

export interface ModelView {
  state: ShownState;
  entry?: Entry;
  /** The download was cancelled: the model is missing again. */
  cancelled?: boolean;
}

const notThere = (m: PlannedModel): ModelState => (m.url ? 'missing' : 'no_source');

/**
 * What a model's row shows. `synced`: the page holds the server's current entries (a snapshot or
 * a poll has arrived); before that an `active` model without an entry is shown as the plan said.
 */
export function viewOf(model: PlannedModel, entry: Entry | undefined, synced: boolean): ModelView {
  if (entry) {
    if (!isFinished(entry.status)) return { state: 'active', entry };
    if (entry.status === 'completed') return { state: 'installed', entry };
    if (entry.status === 'error') return { state: 'failed', entry };
    return { state: notThere(model), entry, cancelled: true };
  }
  // Active by the plan, but the server has no such download (cleared since): missing again.
  if (model.state === 'active' && synced) return { state: notThere(model) };
  return { state: model.state };
}

/**
 * The model as it now stands, to keep with the plan: linked to the entry it follows, `installed`
 * once that completed, missing again once it failed or was cancelled. So the plan stays right after
 * the entries are cleared. Returns the same object when nothing changed.
 */
export function fold(model: PlannedModel, view: ModelView): PlannedModel {
  const e = view.entry;
  let next = model;
  if (e && model.download_id !== e.id) next = { ...next, download_id: e.id };
  const state: ModelState = view.state === 'failed' ? notThere(model) : view.state;
  if (state !== next.state) next = { ...next, state };
  if (e?.status === 'completed') {
    const size = e.file_size ?? e.downloaded;
    if (next.size !== size || next.found_at !== undefined) {
      const { found_at: _gone, ...rest } = next;
      next = { ...rest, size };
    }
  }
  return next;
}

/** The models "Download N missing" would start (the server starts exactly these), and their known bytes. */
export function toDownload(models: readonly PlannedModel[], views: readonly ModelView[]): { count: number; bytes: number; unknown: number } {
  let count = 0;
  let bytes = 0;
  let unknown = 0;
  models.forEach((m, i) => {
    if (views[i]?.state !== 'missing' || !m.url || m.error) return;
    count++;
    if (typeof m.size === 'number') bytes += m.size;
    else unknown++;
  });
  return { count, bytes, unknown };
}

/**
 * `POST /api/downloads` for a model fetched from a URL the user pasted: into the model's own
 * folder, subfolders of its name included (`loras` + `SDXL/x.safetensors` → folder `loras/SDXL`,
 * filename `x.safetensors`), so that it lands where the workflow looks for it.
 */
export function fetchRequest(model: Pick<PlannedModel, 'folder' | 'name'>, url: string): AddRequest {
  const slash = model.name.lastIndexOf('/');
  return {
    url,
    folder: slash < 0 ? model.folder : `${model.folder}/${model.name.slice(0, slash)}`,
    filename: model.name.slice(slash + 1),
  };
}

export const SOURCE_LABELS: Readonly<Record<ModelSource, string>> = {
  workflow: 'link in the workflow',
  catalog: 'catalog',
  model_list: 'model list',
};
