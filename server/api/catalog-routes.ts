import fsp from 'node:fs/promises';
import type Router from '@koa/router';
import type { Context } from 'koa';
import { readBody } from './body';
import { checkId, type Catalog, type CatalogData } from '../catalog/catalog';
import { badRequest } from '../errors';
import { resolveDest } from '../disk/paths';
import type { AddRequest } from '../protocol/wire';

export interface CatalogRouteDeps {
  catalog: Catalog;
  modelsDir: string;
  /** Starts a download and answers as `POST /api/downloads` does. */
  start(ctx: Context, req: AddRequest): Promise<void>;
}

/** Whether the model's file is already under MODELS_DIR (a hand-edited path that is not valid is not). */
async function onDisk(modelsDir: string, p: unknown): Promise<boolean> {
  if (typeof p !== 'string') return false;
  const slash = p.lastIndexOf('/');
  try {
    const { abs } = resolveDest(modelsDir, p.slice(0, slash), p.slice(slash + 1));
    return (await fsp.stat(abs)).isFile();
  } catch {
    return false;
  }
}

/** The catalog as stored, each model with `on_disk`. */
async function withOnDisk(data: CatalogData, modelsDir: string): Promise<CatalogData> {
  const out: CatalogData = {};
  await Promise.all(
    Object.entries(data).map(async ([setId, set]) => {
      const models: Record<string, unknown> = {};
      for (const [id, m] of Object.entries(set.models)) models[id] = { ...m, on_disk: await onDisk(modelsDir, m?.path) };
      out[setId] = { ...set, models } as CatalogData[string];
    }),
  );
  // Promise.all fills `out` in completion order: keep the file's order.
  return Object.fromEntries(Object.keys(data).map((k) => [k, out[k]!]));
}

const truthy = (v: unknown): boolean | undefined => (v === true || v === 'true' || v === 'on' || v === '1' ? true : v === undefined || v === '' ? undefined : false);

/**
 * `GET /api/catalog`, `POST /download`, editing (`POST /api/catalog/:set/models`, `PUT`/`DELETE
 * …/:id`) and the seed's names for them (`/get_model_configs`, `/add_model`, `/edit_model`,
 * `/delete_model`).
 */
export function registerCatalogRoutes(router: Router, deps: CatalogRouteDeps): void {
  const { catalog, modelsDir } = deps;

  const list = async (ctx: Context): Promise<void> => {
    ctx.body = await withOnDisk(await catalog.read(), modelsDir);
  };
  router.get('/api/catalog', list);
  router.get('/get_model_configs', list);

  router.post('/download', async (ctx) => {
    const body = await readBody(ctx);
    const model = await catalog.get(checkId(body.model_set, 'model_set'), checkId(body.model_id, 'model_id'));
    const slash = model.path.lastIndexOf('/');
    if (slash < 1) throw badRequest('INVALID_PATH', `The catalog model's path \`${model.path}\` is not <folder>/<file>; fix it in the catalog`);
    const overwrite = truthy(body.overwrite);
    await deps.start(ctx, {
      url: model.url,
      folder: model.path.slice(0, slash),
      filename: model.path.slice(slash + 1),
      ...(model.sha256 ? { sha256: model.sha256 } : {}),
      ...(overwrite === undefined ? {} : { overwrite }),
    });
  });

  // Bodies are a model plus, for the seed's routes, `model_set`/`model_id`; only model fields are kept.
  const add = async (ctx: Context, setId: unknown, body: Record<string, unknown>, id: unknown): Promise<void> => {
    ctx.body = await catalog.addModel(checkId(setId, 'model_set'), body, { id, setName: body.set_name });
    ctx.status = 201;
  };
  router.post('/api/catalog/:set/models', async (ctx) => {
    const body = await readBody(ctx);
    await add(ctx, ctx.params.set, body, body.id);
  });
  router.post('/add_model', async (ctx) => {
    const body = await readBody(ctx);
    await add(ctx, body.model_set, body, body.model_id ?? body.id);
  });

  router.put('/api/catalog/:set/models/:id', async (ctx) => {
    const body = await readBody(ctx);
    ctx.body = await catalog.putModel(ctx.params.set!, ctx.params.id!, body);
  });
  router.post('/edit_model', async (ctx) => {
    const body = await readBody(ctx);
    ctx.body = await catalog.putModel(checkId(body.model_set, 'model_set'), checkId(body.model_id, 'model_id'), body);
  });

  router.delete('/api/catalog/:set/models/:id', async (ctx) => {
    await catalog.deleteModel(ctx.params.set!, ctx.params.id!);
    ctx.status = 204;
  });
  router.post('/delete_model', async (ctx) => {
    const body = await readBody(ctx);
    const setId = checkId(body.model_set, 'model_set');
    const modelId = checkId(body.model_id, 'model_id');
    await catalog.deleteModel(setId, modelId);
    ctx.body = { status: 'deleted', model_set: setId, model_id: modelId };
  });
}
