/**
 * The plan of a workflow: for each model it needs, where it goes (`dest`), whether it is installed,
 * being downloaded or missing, and where to get it — the workflow's own link first, then the
 * catalog, then a ComfyUI-Manager model list — with sizes and gating from an injected probe.
 * The answer of `POST /api/workflows/plan`; the download route starts `startable(plan)`.
 */
import { AppError } from '../errors';
import { resolveDest } from '../disk/paths';
import { parseSourceUrl, redactUrl } from '../net/url-policy';
import type { Entry, ModelSource, ModelState, Plan, PlannedModel } from '../protocol/wire';
import type { NodeRef, WantedModel } from './extract';
import type { Locator } from './locate';
import type { SourceEntry, SourceIndex } from './source-index';
import { isFinished } from '../protocol/status';

export type { ModelSource, ModelState, Plan, PlannedModel } from '../protocol/wire';

export interface ProbeResult {
  size?: number;
  /** Set when the URL needs an account or a licence: what to do, in words. */
  gated?: string;
}
/** Asks a source about a URL without downloading it. Injected: the HTTP client is another module's. */
export type Probe = (url: string) => Promise<ProbeResult>;

export interface PlanDeps {
  modelsDir: string;
  locator: Locator;
  catalog?: SourceIndex;
  modelList?: SourceIndex;
  /** The status file's entry for a `dest`, if any. */
  download(dest: string): Pick<Entry, 'id' | 'status' | 'file_size'> | undefined;
  probe: Probe;
  /** HF_ENDPOINT/CIVITAI_ENDPOINT as mirrors (mirror.ts). */
  mirror(url: string): string;
  /** Probes in flight at once. @default 4 */
  probeConcurrency?: number;
  /** A probe that has not answered by then counts as knowing nothing. @default 10000 */
  probeTimeoutMs?: number;
}



const GATED_MESSAGE = 'The source needs an account and an accepted licence: accept it on the model page and set HF_TOKEN (CIVITAI_TOKEN for Civitai)';

/** A link's URL as the service would fetch and show it; undefined when the service would refuse it. */
function usableUrl(raw: string): string | undefined {
  try {
    return redactUrl(parseSourceUrl(raw));
  } catch {
    return undefined;
  }
}

function findSource(m: WantedModel, deps: PlanDeps): { source: ModelSource; entry: SourceEntry & { url: string } } | undefined {
  const own = m.url === undefined ? undefined : usableUrl(m.url);
  if (own) return { source: 'workflow', entry: { name: m.name, url: own } };
  for (const [source, index] of [['catalog', deps.catalog], ['model_list', deps.modelList]] as const) {
    const hit = index?.find(m.folder, m.name);
    const url = hit && usableUrl(hit.url);
    if (hit && url) return { source, entry: { ...hit, url } };
  }
  return undefined;
}

async function planOne(m: WantedModel, deps: PlanDeps): Promise<{ model: PlannedModel; approxSize?: number; gatedHint: boolean }> {
  const slash = m.name.lastIndexOf('/');
  let dest = `${m.folder}/${m.name}`;
  let error: PlannedModel['error'];
  try {
    dest = resolveDest(deps.modelsDir, slash < 0 ? m.folder : `${m.folder}/${m.name.slice(0, slash)}`, m.name.slice(slash + 1)).dest;
  } catch (err) {
    error = err instanceof AppError ? { code: err.code, message: err.message } : { code: 'INVALID_PATH', message: String(err) };
  }
  const found = await deps.locator.locate(m.folder, m.name);
  const entry = error ? undefined : deps.download(dest);
  const active = entry && !isFinished(entry.status) ? entry : undefined;
  const src = findSource(m, deps);
  const url = src ? deps.mirror(src.entry.url) : null;
  const state: ModelState = active ? 'active' : found ? 'installed' : src ? 'missing' : 'no_source';
  const sha256 = m.sha256 ?? src?.entry.sha256;
  const size = found?.size ?? (active && active.file_size !== null ? active.file_size : undefined);
  const model: PlannedModel = {
    name: m.name,
    folder: m.folder,
    dest,
    state,
    url,
    source: src?.source ?? null,
    ...(sha256 ? { sha256 } : {}),
    ...(size !== undefined ? { size } : {}),
    ...(found?.foundAt ? { found_at: found.foundAt } : {}),
    ...(active ? { download_id: active.id } : {}),
    nodes: m.nodes,
    ...(error ? { error } : {}),
  };
  return { model, ...(src?.entry.size !== undefined ? { approxSize: src.entry.size } : {}), gatedHint: src?.entry.gated === true };
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A probe's answer within the time allowed; a failure or silence is "unknown". */
async function probeSafely(probe: Probe, url: string, timeoutMs: number): Promise<ProbeResult> {
  let timer: NodeJS.Timeout | undefined;
  const silence = new Promise<ProbeResult>((resolve) => {
    timer = setTimeout(() => resolve({}), timeoutMs);
  });
  try {
    return await Promise.race([probe(url).catch(() => ({})), silence]);
  } finally {
    clearTimeout(timer);
  }
}

export async function planModels(wanted: readonly WantedModel[], deps: PlanDeps, name?: string): Promise<Plan> {
  const planned = await Promise.all(wanted.map((m) => planOne(m, deps)));
  const toProbe = planned.filter((p) => p.model.state === 'missing' && !p.model.error && p.model.url);
  const answers = new Map<string, ProbeResult>();
  const urls = [...new Set(toProbe.map((p) => p.model.url!))];
  await eachLimited(urls, deps.probeConcurrency ?? 4, async (url) => {
    answers.set(url, await probeSafely(deps.probe, url, deps.probeTimeoutMs ?? 10_000));
  });
  let missingBytes = 0;
  for (const p of toProbe) {
    const answer = answers.get(p.model.url!) ?? {};
    const size = typeof answer.size === 'number' && Number.isSafeInteger(answer.size) && answer.size >= 0 ? answer.size : p.approxSize;
    if (size !== undefined) {
      p.model.size = size;
      missingBytes += size;
    }
    const gated = typeof answer.gated === 'string' && answer.gated ? answer.gated : p.gatedHint ? GATED_MESSAGE : undefined;
    if (gated) p.model.gated = gated;
  }
  return { ...(name ? { name } : {}), models: planned.map((p) => orderFields(p.model)), missing_bytes: missingBytes };
}

/** The fields in the documented order (size and gated are filled in after the probes). */
const FIELD_ORDER = ['name', 'folder', 'dest', 'state', 'url', 'source', 'sha256', 'size', 'gated', 'found_at', 'download_id', 'nodes', 'error'] as const;
const orderFields = (m: PlannedModel): PlannedModel =>
  Object.fromEntries(FIELD_ORDER.filter((k) => m[k] !== undefined).map((k) => [k, m[k]])) as unknown as PlannedModel;

/** What the download route starts: each `missing` model that has a URL and a valid `dest`. */
export function startable(plan: Plan): Array<{ url: string; folder: string; filename: string; sha256?: string }> {
  return plan.models
    .filter((m) => m.state === 'missing' && m.url && !m.error)
    .map((m) => {
      const slash = m.dest.lastIndexOf('/');
      return { url: m.url!, folder: m.dest.slice(0, slash), filename: m.dest.slice(slash + 1), ...(m.sha256 ? { sha256: m.sha256 } : {}) };
    });
}
