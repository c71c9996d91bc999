import path from 'node:path';
import Router from '@koa/router';
import Koa, { type Context } from 'koa';
import serve from 'koa-static';
import { readBody } from './body';
import type { Catalog } from '../catalog/catalog';
import { registerCatalogRoutes } from './catalog-routes';
import { registerWorkflowRoutes, type Probe } from './workflow-routes';
import { registerGroupRoutes } from './group-routes';
import type { Config } from '../config';
import type { Downloader } from '../downloader/downloader';
import { toStatusView } from '../store/entry';
import { AppError, notFound } from '../errors';
import type { Logger } from '../logger';
import { listFolders, packageRoot } from '../disk/paths';
import type { AddRequest, AddResult, Entry, StatusView } from '../protocol/wire';
import { checkHost, checkOrigin, checkToken } from './security';
import type { Add, GroupResult, RoomCheck } from '../sources/groups';
import type { StatusStore } from '../store/status-store';
import type { Fleet } from '../fleet/fleet';

export interface AppDeps {
  config: Readonly<Config>;
  store: StatusStore;
  downloader: Downloader;
  log: Logger;
  /** Starts a download from a request: settles the file name (see intake.ts). @default downloader.add */
  intake?: Add;
  /** Starts a Hugging Face folder or repository as a group; undefined for any other URL. */
  repo?: (req: AddRequest) => Promise<GroupResult | undefined>;
  /** The model catalog; without it there are no catalog routes. */
  catalog?: Catalog;
  /** Folder of the page. @default <repo>/dist/public (built by client/build.js) */
  staticDir?: string;
  /** Sizes and gating of model URLs for workflow plans. @default none (plans without sizes) */
  probe?: Probe;
  /** Fleet mode: every server's downloads listed, commands for another server's handed to it. */
  fleet?: Fleet;
  /** Refuses a group (a workflow's models) whose files do not fit on their disks (507). @default no check */
  room?: RoomCheck;
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** The seed's routes outside /api/, which need API_TOKEN like the rest of the API. */
const SEED_API = new Set(['/status', '/clear_completed', '/download', '/ws', '/get_model_configs', '/add_model', '/edit_model', '/delete_model']);
/**
 * Paths open without API_TOKEN: the page itself and the health check. Compared as the router
 * matches them (case-insensitive, trailing slash optional), so `/STATUS/` is not a way around it.
 */
const isOpenPath = (raw: string): boolean => {
  const p = raw.toLowerCase().replace(/\/+$/, '');
  return p === '/healthz' || !(p.startsWith('/api/') || p === '/api' || SEED_API.has(p));
};

/** Answers of `POST /api/downloads` (and `POST /download`): the same everywhere. */
export function addAnswer(ctx: Context, result: AddResult): void {
  if (result.outcome === 'already_exists') {
    ctx.status = 200;
    ctx.body = {
      status: 'already_exists',
      download: result.download,
      ...(result.same_as ? { same_as: result.same_as } : {}),
      ...(result.linked ? { linked: true } : {}),
      ...(result.note ? { note: result.note } : {}),
    };
  } else {
    ctx.status = 202;
    ctx.body = { download: result.download, ...(result.note ? { note: result.note } : {}) };
  }
}

/** Fleet mode: a command done here (200), or handed to the server that owns the download (202, `forwarded_to`). */
function fleetAnswer(ctx: Context, result: { download: Entry; forwarded_to?: string }): void {
  ctx.status = result.forwarded_to ? 202 : 200;
  ctx.body = result;
}

/** Builds the Koa app: routes, security checks and the one error middleware. Does not listen. */
export function createApp(deps: AppDeps): Koa {
  const { config, store, downloader, log } = deps;
  const add: Add = deps.intake ?? (async (req, options) => downloader.add(req, options));
  const app = new Koa();
  app.proxy = false;
  app.silent = true;

  // One place turns every failure into {error:{code,message}}.
  app.use(async (ctx, next) => {
    try {
      await next();
      // The router's own answers (no route, a method the route lacks) come without a body.
      if (ctx.body === undefined || ctx.body === null) {
        if (ctx.status === 404) throw notFound('NOT_FOUND', `No route for ${ctx.method} ${ctx.path}`);
        if (ctx.status === 405) {
          throw new AppError('METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on ${ctx.path}; it takes ${ctx.response.get('Allow')}`, { status: 405 });
        }
        if (ctx.status === 501) throw new AppError('NOT_IMPLEMENTED', `This server does not handle ${ctx.method} requests`, { status: 501 });
      }
    } catch (err) {
      const e = err as Error & { download?: Entry; expose?: boolean; status?: number; statusCode?: number };
      const status = e instanceof AppError ? e.status : (e.status ?? e.statusCode ?? 500);
      ctx.status = status;
      const code = e instanceof AppError ? e.code : status >= 500 ? 'INTERNAL' : `HTTP_${status}`;
      const message = e instanceof AppError || (e.expose && status < 500) ? e.message : 'Internal error; see the server log';
      ctx.body = { error: { code, message }, ...(e.download ? { download: e.download } : {}) };
      if (status >= 500) log.error(`${ctx.method} ${ctx.path}: ${e.stack ?? String(e)}`);
    }
  });

  app.use(async (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    const refusal =
      checkHost(ctx.req, config) ??
      (STATE_CHANGING.has(ctx.method) ? checkOrigin(ctx.req, config) : undefined) ??
      (isOpenPath(ctx.path) ? undefined : checkToken(ctx.req, config, false));
    if (refusal) throw refusal;
    await next();
  });

  const router = new Router();
  const { fleet } = deps;
  const list = (): Entry[] => (fleet ? fleet.list() : store.all());

  router.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });

  router.get('/status', (ctx) => {
    const out: Record<string, StatusView> = {};
    for (const e of list()) out[e.dest] = toStatusView(e);
    ctx.body = out;
  });

  router.post('/clear_completed', (ctx) => {
    ctx.body = { status: 'cleared', removed_count: downloader.clearCompleted() };
  });

  router.get('/api/downloads', (ctx) => {
    ctx.body = { downloads: list() };
  });

  router.post('/api/downloads', async (ctx) => {
    const body = (await readBody(ctx)) as unknown as AddRequest;
    const grouped = deps.repo ? await deps.repo(body) : undefined;
    if (grouped) {
      ctx.status = 202;
      ctx.body = grouped;
      return;
    }
    addAnswer(ctx, await add(body));
  });

  router.get('/api/downloads/:id', (ctx) => {
    const download = fleet ? fleet.get(ctx.params.id!) : store.getById(ctx.params.id!);
    if (!download) throw notFound('NOT_FOUND', `No download with id \`${ctx.params.id}\``);
    ctx.body = { download };
  });

  const commands = { pause: 'pause', resume: 'resume', cancel: 'cancel', retry: 'retry' } as const;
  for (const action of Object.keys(commands) as Array<keyof typeof commands>) {
    router.post(`/api/downloads/:id/${action}`, async (ctx) => {
      if (fleet) return fleetAnswer(ctx, await fleet.command(action, ctx.params.id!));
      ctx.body = { download: downloader[action](ctx.params.id!) };
    });
  }

  registerGroupRoutes(router, {
    list,
    run: async (action, id) => (fleet ? fleet.command(action, id) : { download: downloader[action](id) }),
  });

  router.delete('/api/downloads/:id', async (ctx) => {
    if (fleet) return fleetAnswer(ctx, await fleet.command('remove', ctx.params.id!));
    ctx.body = { download: downloader.remove(ctx.params.id!) };
  });

  if (fleet) {
    router.get('/api/fleet', (ctx) => {
      ctx.body = fleet.describe();
    });
  }

  router.get('/api/folders', (ctx) => {
    ctx.body = { folders: listFolders(config.modelsDir) };
  });

  if (deps.catalog) {
    registerCatalogRoutes(router, { catalog: deps.catalog, modelsDir: config.modelsDir, start: async (ctx, req) => addAnswer(ctx, await add(req)) });
  }

  // In fleet mode a plan says "downloading" for a model another server has under way, too.
  const downloads = fleet ? { get: (dest: string) => fleet.entryFor(dest) } : store;
  registerWorkflowRoutes(router, { config, store: downloads, catalog: deps.catalog, probe: deps.probe, add, room: deps.room });

  app.use(router.routes());
  app.use(router.allowedMethods({ throw: false }));
  app.use(serve(deps.staticDir ?? path.join(packageRoot(), 'dist', 'public'), { index: 'index.html' }));
  return app;
}
