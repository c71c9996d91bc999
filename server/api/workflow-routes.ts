/**
 * The workflow routes: `POST /api/workflows/plan` reads a workflow (JSON, or a PNG saved by
 * ComfyUI) with this route's own body limits, and answers its plan (server/workflows/);
 * `POST /api/workflows/download` plans it the same way and starts every missing model that has a
 * URL, as one group. The files a plan reads (extra_model_paths.yaml, the catalog, a model list)
 * are read at each request.
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import { readBytes } from './body';
import type { Catalog } from '../catalog/catalog';
import type { Config } from '../config';
import { AppError, badRequest } from '../errors';
import type { Entry } from '../protocol/wire';
import { extractModels } from '../workflows/extract';
import { loadExtraModelPaths } from '../workflows/extra-paths';
import { createLocator } from '../workflows/locate';
import { mirrorUrl } from '../sources/mirror';
import { loadModelList } from '../workflows/model-list';
import { parseWorkflowBytes, parseWorkflowPng, type ParsedWorkflow } from '../workflows/parse';
import { planModels, startable, type Plan, type Probe } from '../workflows/plan';
import { startGroup, type Add, type GroupItem, type RoomCheck } from '../sources/groups';
import { catalogSources, indexSources } from '../workflows/source-index';

export type { Probe } from '../workflows/plan';

/** A workflow as JSON: ComfyUI's own files with big subgraphs stay well below this. */
export const MAX_WORKFLOW_JSON_BYTES = 16 * 1024 * 1024;
/** A PNG saved by ComfyUI: the image plus its workflow text. */
export const MAX_WORKFLOW_IMAGE_BYTES = 64 * 1024 * 1024;

export interface WorkflowRouteDeps {
  config: Readonly<Pick<Config, 'modelsDir' | 'extraModelPaths' | 'modelListFile' | 'hfEndpoint' | 'civitaiEndpoint'>>;
  /** The status file's entries by `dest` (StatusStore). */
  store: { get(dest: string): Entry | undefined };
  catalog?: Pick<Catalog, 'read'> | undefined;
  /** Sizes and gating of model URLs. @default knows nothing (plans without sizes) */
  probe?: Probe | undefined;
  /** Starts one download (intake); without it there is no download route. */
  add?: Add | undefined;
  /** Refuses a group whose files do not fit on their disks (507). @default no check */
  room?: RoomCheck | undefined;
}

const knowsNothing: Probe = async () => ({});

/** The body's workflow, read with the limit its media type allows (a JSON body that is a PNG is taken too). */
async function readWorkflow(ctx: Context): Promise<ParsedWorkflow> {
  const type = (ctx.get('content-type') || 'application/json').split(';')[0]!.trim().toLowerCase();
  const image = type === 'image/png';
  if (!image && type !== 'application/json' && type !== 'text/plain') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Expected a workflow as application/json or a PNG as image/png, got ${type}`, { status: 415 });
  }
  const bytes = await readBytes(ctx, image ? MAX_WORKFLOW_IMAGE_BYTES : MAX_WORKFLOW_JSON_BYTES);
  if (bytes.length === 0) throw badRequest('NOT_A_WORKFLOW', 'The body is empty: send a ComfyUI workflow (JSON) or a PNG saved by ComfyUI');
  return image ? parseWorkflowPng(bytes) : parseWorkflowBytes(bytes);
}

/** `?name=` (the file's name, say): the plan's name, without `.json`/`.png`. */
function planName(ctx: Context): string | undefined {
  const raw = ctx.query.name;
  if (typeof raw !== 'string') return undefined;
  const name = raw.replace(/\p{Cc}/gu, '').trim().replace(/\.(json|png)$/i, '').slice(0, 200);
  return name || undefined;
}

/** `?link=true` (or `1`): models already completed elsewhere (same sha256) are hard-linked into place. */
function linkParam(ctx: Context): boolean {
  const raw = ctx.query.link;
  if (raw === undefined) return false;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw badRequest('INVALID_BODY', 'Expected `?link=` to be true or false');
}

/** A workflow → its plan, reading the extra paths, catalog and model list as they are now. */
export async function planWorkflow(workflow: ParsedWorkflow, deps: WorkflowRouteDeps, name?: string): Promise<Plan> {
  const { config } = deps;
  const wanted = extractModels(workflow);
  const [extra, catalog, modelList] = await Promise.all([
    loadExtraModelPaths(config.extraModelPaths, config.modelsDir),
    deps.catalog ? deps.catalog.read().then((data) => indexSources(catalogSources(data))) : undefined,
    config.modelListFile ? loadModelList(config.modelListFile).then(indexSources) : undefined,
  ]);
  return planModels(
    wanted,
    {
      modelsDir: config.modelsDir,
      locator: createLocator(config.modelsDir, extra),
      ...(catalog ? { catalog } : {}),
      ...(modelList ? { modelList } : {}),
      download: (dest) => deps.store.get(dest),
      probe: deps.probe ?? knowsNothing,
      mirror: (url) => mirrorUrl(url, config),
    },
    name,
  );
}

/**
 * `POST /api/workflows/plan`: a workflow (UI or API JSON, or a PNG with `Content-Type: image/png`)
 * → every model it needs, where it goes, and whether it is installed, downloading or missing.
 */
export function registerWorkflowRoutes(router: Router, deps: WorkflowRouteDeps): void {
  router.post('/api/workflows/plan', async (ctx) => {
    ctx.body = await planWorkflow(await readWorkflow(ctx), deps, planName(ctx));
  });

  const { add } = deps;
  if (!add) return;
  /**
   * Every `missing` model with a URL started as one group (verified by the link's sha256 when it
   * gives one); the answer's models say which are now active. Installed, active and sourceless
   * models are left as they are.
   */
  router.post('/api/workflows/download', async (ctx) => {
    const name = planName(ctx);
    const link = linkParam(ctx);
    const plan = await planWorkflow(await readWorkflow(ctx), deps, name);
    const sizes = new Map(plan.models.map((m) => [m.dest, m.size]));
    const items: GroupItem[] = startable(plan).map((req) => {
      const size = sizes.get(`${req.folder}/${req.filename}`);
      return { req: link ? { ...req, link } : req, ...(size !== undefined ? { size } : {}) };
    });
    const started = await startGroup(plan.name ?? 'workflow', items, { add, room: deps.room });
    const byDest = new Map(started.downloads.map((d) => [d.dest, d]));
    const skipped = new Map(started.skipped.map((s) => [`${s.folder}/${s.filename}`, s.error]));
    const models = plan.models.map((m) => {
      const d = byDest.get(m.dest);
      if (d) return { ...m, state: d.status === 'completed' ? ('installed' as const) : ('active' as const), download_id: d.id };
      const error = skipped.get(m.dest);
      return error ? { ...m, error } : m;
    });
    ctx.status = 202;
    ctx.body = {
      group: started.group,
      models,
      downloads: started.downloads,
      ...(started.skipped.length ? { skipped: started.skipped } : {}),
      ...(started.found_elsewhere.length ? { found_elsewhere: started.found_elsewhere } : {}),
    };
  });
}
