/**
 * Imitation Hugging Face Hub and Civitai hosts for the metadata layer's tests: real HTTP servers on
 * loopback (port 0), each request recorded with its headers (`api.requests`) so that tests can
 * assert where tokens went.
 *
 * Hugging Face (`hub.hf`), as the Hub answers:
 * - repositories of commits: `commit()` makes a new commit on a branch (the previous files plus the
 *   given ones), with git-like ids; a branch moves, a commit never changes;
 * - `GET /api/<models|datasets>/<repo>/revision/<rev>` → `{ id, sha, siblings, … }`;
 * - `GET /api/<…>/<repo>/tree/<rev>[/<path>]?recursive=true` → pages of `pageSize` entries
 *   (`{type, oid, size, path, lfs?: {oid, size, pointerSize}}`), the next one in
 *   `Link: <…&cursor=…>; rel="next"`. A page is listed at the revision as it is when that page is
 *   asked: paging a branch that moves mixes commits, paging a commit does not;
 * - `onTreePage(fn)` runs after each page is sent (to move a branch mid-listing);
 * - `GET /<repo>/resolve/<rev>/<path>`: LFS files 302 to the CDN with X-Linked-Size / X-Linked-Etag,
 *   files kept in git served directly with their git blob id as ETag (`served` bytes, when a file
 *   spec gives them, stand for a broken mirror: the listing still describes `data`);
 * - gated repositories: 401 `X-Error-Code: GatedRepo` without a token, 403 before the licence is
 *   accepted (tree and resolve; the revision lookup is public, as model info is on the Hub);
 *   private or missing ones 401 (no token) or 404 `RepoNotFound`; a wrong token 401
 *   "Invalid credentials in Authorization header" anywhere;
 * - `rename(from, to)`: the old name answers 307 to the new one on the same host.
 *
 * Civitai (`hub.civitai`): `model()` adds a model with versions (newest first) and files;
 * `GET /api/v1/model-versions/<id>`, `/api/v1/models/<id>`, `/api/v1/model-versions/by-hash/<sha256>`
 * with Civitai's shapes (files with `sizeKB`, `metadata {format,size,fp}`, `hashes`, `primary`,
 * `downloadUrl`); `GET /api/download/models/<id>[?type&format&size&fp&fileId]` 307 to the CDN. A
 * file's announced `sha256` may differ from its bytes.
 *
 * `hub.other`: a third host (another port) to redirect to, recording what reaches it.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import { AppError } from '../../server/errors';
import { startFakeCdn, type FakeCdn } from './fake-hosts';
import { startFileServer, type FileServer } from './file-server';

export const sha256Of = (data: Buffer): string => crypto.createHash('sha256').update(data).digest('hex');
export const gitBlobOf = (data: Buffer): string => crypto.createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');

const json = (res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
};

const hfError = (res: http.ServerResponse, status: number, code: string | undefined, message: string): void =>
  json(res, status, { error: message }, { ...(code ? { 'X-Error-Code': code } : {}), 'X-Error-Message': message });

// ---------------------------------------------------------------- Hugging Face

export interface HubFileSpec {
  data: Buffer;
  /** Stored in LFS. @default true except for .json/.txt/.md/.gitattributes/.py/.yaml files */
  lfs?: boolean;
  /** Bytes `resolve` serves instead of `data`, as a broken mirror would; the listing still describes `data`. */
  served?: Buffer;
}

interface StoredFile {
  data: Buffer;
  /** What `resolve` serves: `data`, unless the spec said otherwise. */
  served: Buffer;
  lfs: boolean;
  sha256: string;
  /** What the tree's `oid` says: the blob id of the pointer (LFS) or of the bytes. */
  oid: string;
  pointerSize: number;
}

export interface HubRepoOptions {
  type?: 'model' | 'dataset';
  /** 401 without a token, 403 with one until `licenceAccepted`. */
  gated?: boolean;
  /** @default true */
  licenceAccepted?: boolean;
  /** Seen only with the token: others get the answers of a missing repository. */
  private?: boolean;
}

interface Repo extends Required<HubRepoOptions> {
  name: string;
  branches: Map<string, string>;
  commits: Map<string, Map<string, StoredFile>>;
}

export interface FakeHf {
  /** The HF_ENDPOINT to configure (with the path prefix, when one was asked). */
  url: string;
  api: FileServer;
  cdn: FakeCdn;
  /** Entries per tree page. */
  pageSize: number;
  repo(name: string, options?: HubRepoOptions): void;
  /** A new commit on `branch` (default `main`): the branch's files, these added or replaced, `null` ones removed. Returns its id. */
  commit(repo: string, files: Record<string, Buffer | string | HubFileSpec | null>, options?: { branch?: string }): string;
  /** The commit a branch points to. */
  head(repo: string, branch?: string): string;
  /** The old name answers 307 to the new one. */
  rename(from: string, to: string): void;
  /** Runs after each tree page is sent; remove with the returned function. */
  onTreePage(fn: (page: { repo: string; index: number; rev: string }) => void): () => void;
  setRepo(name: string, options: Partial<HubRepoOptions>): void;
}

const isSmallText = (p: string): boolean => /\.(json|txt|md|gitattributes|py|yaml|yml)$/i.test(p) || p === '.gitattributes';

async function startFakeHf(token: string | undefined, prefix: string, pageSize: number): Promise<FakeHf> {
  const api = await startFileServer();
  const cdn = await startFakeCdn();
  const repos = new Map<string, Repo>();
  const renamed = new Map<string, string>();
  const pageHooks = new Set<(page: { repo: string; index: number; rev: string }) => void>();
  const base = `${api.url}${prefix}`;

  const newSha = (): string => crypto.randomBytes(20).toString('hex');

  const store = (path: string, spec: Buffer | string | HubFileSpec): StoredFile => {
    const s: HubFileSpec = Buffer.isBuffer(spec) ? { data: spec } : typeof spec === 'string' ? { data: Buffer.from(spec) } : spec;
    const lfs = s.lfs ?? !isSmallText(path);
    const sha256 = sha256Of(s.data);
    const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${s.data.length}\n`);
    return { data: s.data, served: s.served ?? s.data, lfs, sha256, oid: gitBlobOf(lfs ? pointer : s.data), pointerSize: pointer.length };
  };

  /** The commit a revision names now: a branch's head or a commit id. */
  const commitOf = (repo: Repo, rev: string): string | undefined => repo.branches.get(rev) ?? (repo.commits.has(rev) ? rev : undefined);

  /** Checks the token and the repository's access; answers the refusal and returns undefined when refused. */
  const access = (req: http.IncomingMessage, res: http.ServerResponse, name: string, gatedCheck: boolean): Repo | undefined => {
    const auth = req.headers.authorization;
    if (auth !== undefined && auth !== `Bearer ${token}`) {
      hfError(res, 401, undefined, 'Invalid credentials in Authorization header');
      return undefined;
    }
    const authorized = auth !== undefined;
    const repo = repos.get(name);
    if (!repo || (repo.private && !authorized)) {
      hfError(res, authorized ? 404 : 401, 'RepoNotFound', 'Repository not found');
      return undefined;
    }
    if (gatedCheck && repo.gated && !authorized) {
      hfError(res, 401, 'GatedRepo', `Access to model ${name} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      return undefined;
    }
    if (gatedCheck && repo.gated && !repo.licenceAccepted) {
      hfError(res, 403, 'GatedRepo', `Access to model ${name} is restricted and you are not in the authorized list. Visit ${base}/${name} to ask for access.`);
      return undefined;
    }
    return repo;
  };

  const decodeAll = (segs: string[]): string[] | undefined => {
    try {
      return segs.map(decodeURIComponent);
    } catch {
      return undefined;
    }
  };

  const redirectRenamed = (res: http.ServerResponse, url: URL, name: string): boolean => {
    const to = renamed.get(name);
    if (!to) return false;
    const next = new URL(url);
    next.pathname = url.pathname.replace(`/${name}/`, `/${to}/`);
    res.writeHead(307, { Location: next.pathname + next.search, 'Content-Type': 'text/plain' });
    res.end(`Temporary Redirect. Redirecting to ${next.pathname}`);
    return true;
  };

  api.route(`${prefix}/api/*`, (req, res) => {
    const url = new URL(req.url ?? '/', api.url);
    const raw = url.pathname.slice(prefix.length).split('/').slice(2); // after "/api"
    const kind = raw[0];
    if (kind !== 'models' && kind !== 'datasets') return hfError(res, 404, undefined, 'Not Found');
    const name = `${raw[1]}/${raw[2]}`;
    if (redirectRenamed(res, url, name)) return;
    const op = raw[3];
    const rest = decodeAll(raw.slice(4));
    if (!rest) return hfError(res, 400, undefined, 'Bad path');
    if (op === 'revision') {
      const repo = access(req, res, name, false);
      if (!repo) return;
      const rev = rest.join('/');
      const sha = commitOf(repo, rev);
      if (!sha) return hfError(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      const files = repo.commits.get(sha)!;
      return json(res, 200, {
        _id: crypto.createHash('md5').update(name).digest('hex').slice(0, 24),
        id: name,
        modelId: name,
        sha,
        private: repo.private,
        gated: repo.gated ? 'manual' : false,
        disabled: false,
        siblings: [...files.keys()].sort().map((rfilename) => ({ rfilename })),
      });
    }
    if (op === 'tree') {
      const repo = access(req, res, name, true);
      if (!repo) return;
      const rev = rest[0] ?? '';
      const sha = commitOf(repo, rev);
      if (!sha) return hfError(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      const dir = rest.slice(1).join('/').replace(/\/+$/, '');
      const files = repo.commits.get(sha)!;
      const recursive = url.searchParams.get('recursive') === 'true' || url.searchParams.get('recursive') === 'True';
      const entries: Array<Record<string, unknown>> = [];
      const dirs = new Set<string>();
      const under = [...files.keys()].filter((p) => dir === '' || p.startsWith(`${dir}/`));
      if (dir !== '' && under.length === 0) return hfError(res, 404, 'EntryNotFound', `${dir} does not exist on "${rev}"`);
      for (const p of under) {
        const rel = dir === '' ? p : p.slice(dir.length + 1);
        const parts = rel.split('/');
        for (let i = 1; i < parts.length; i++) dirs.add((dir ? `${dir}/` : '') + parts.slice(0, i).join('/'));
        if (!recursive && parts.length > 1) continue;
        const f = files.get(p)!;
        entries.push({
          type: 'file',
          oid: f.oid,
          size: f.data.length,
          path: p,
          ...(f.lfs ? { lfs: { oid: f.sha256, size: f.data.length, pointerSize: f.pointerSize } } : {}),
        });
      }
      for (const d of dirs) {
        const depth = (dir === '' ? d : d.slice(dir.length + 1)).split('/').length;
        if (recursive || depth === 1) entries.push({ type: 'directory', oid: crypto.createHash('sha1').update(d).digest('hex'), size: 0, path: d });
      }
      entries.sort((a, b) => (String(a.path) < String(b.path) ? -1 : 1));
      const cursor = Number(url.searchParams.get('cursor') ?? '0');
      const page = entries.slice(cursor, cursor + fake.pageSize);
      const headers: http.OutgoingHttpHeaders = {};
      if (cursor + fake.pageSize < entries.length) {
        const next = new URL(url);
        next.searchParams.set('cursor', String(cursor + fake.pageSize));
        headers.Link = `<${next.toString()}>; rel="next"`;
      }
      json(res, 200, page, headers);
      const index = Math.floor(cursor / fake.pageSize);
      res.once('finish', () => {
        for (const fn of pageHooks) fn({ repo: name, index, rev });
      });
      return;
    }
    return hfError(res, 404, undefined, 'Not Found');
  });

  api.route(`${prefix}/*`, (req, res) => {
    const url = new URL(req.url ?? '/', api.url);
    let raw = url.pathname.slice(prefix.length).split('/').slice(1);
    if (raw[0] === 'datasets') raw = raw.slice(1);
    const name = `${raw[0]}/${raw[1]}`;
    if (raw[2] !== 'resolve') return hfError(res, 404, undefined, 'Not Found');
    if (redirectRenamed(res, url, name)) return;
    const repo = access(req, res, name, true);
    if (!repo) return;
    const rest = decodeAll(raw.slice(3));
    if (!rest || rest.length < 2) return hfError(res, 400, undefined, 'Bad path');
    const sha = commitOf(repo, rest[0]!);
    if (!sha) return hfError(res, 404, 'RevisionNotFound', `Invalid rev id: ${rest[0]}`);
    const path = rest.slice(1).join('/');
    const f = repo.commits.get(sha)!.get(path);
    if (!f) return hfError(res, 404, 'EntryNotFound', `${path} does not exist on "${rest[0]}"`);
    const common = { 'X-Repo-Commit': sha };
    if (f.lfs) {
      const location = cdn.put(`${f.sha256}-${crypto.randomBytes(4).toString('hex')}`, f.served, path.split('/').pop()!);
      res.writeHead(302, {
        ...common,
        Location: location,
        'X-Linked-Size': String(f.data.length),
        'X-Linked-Etag': `"${f.sha256}"`,
        ETag: `"${f.sha256}"`,
        'Content-Type': 'text/plain; charset=utf-8',
      });
      res.end(`Found. Redirecting to ${location}`);
      return;
    }
    res.writeHead(200, { ...common, 'Content-Type': 'application/octet-stream', 'Content-Length': f.served.length, ETag: `"${f.oid}"` });
    res.end(req.method === 'HEAD' ? undefined : f.served);
  });

  const get = (name: string): Repo => {
    const r = repos.get(name);
    if (!r) throw new Error(`fake hub: no repository ${name}`);
    return r;
  };

  const fake: FakeHf = {
    url: base,
    api,
    cdn,
    pageSize,
    repo(name, options = {}) {
      repos.set(name, {
        name,
        type: options.type ?? 'model',
        gated: options.gated ?? false,
        licenceAccepted: options.licenceAccepted ?? true,
        private: options.private ?? false,
        branches: new Map(),
        commits: new Map(),
      });
    },
    setRepo(name, options) {
      Object.assign(get(name), options);
    },
    commit(name, files, options = {}) {
      const repo = get(name);
      const branch = options.branch ?? 'main';
      const parent = repo.branches.get(branch);
      const next = new Map(parent ? repo.commits.get(parent) : []);
      for (const [p, spec] of Object.entries(files)) {
        if (spec === null) next.delete(p);
        else next.set(p, store(p, spec));
      }
      const sha = newSha();
      repo.commits.set(sha, next);
      repo.branches.set(branch, sha);
      return sha;
    },
    head: (name, branch = 'main') => get(name).branches.get(branch)!,
    rename(from, to) {
      renamed.set(from, to);
    },
    onTreePage(fn) {
      pageHooks.add(fn);
      return () => pageHooks.delete(fn);
    },
  };
  return fake;
}

// ---------------------------------------------------------------- Civitai

export interface CivitaiFileSpec {
  id?: number;
  name: string;
  data: Buffer;
  /** @default 'Model' */
  type?: string;
  primary?: boolean;
  format?: string;
  size?: string;
  fp?: string;
  /** The SHA256 the API announces, when it is not the bytes' own. */
  sha256?: string;
}

export interface CivitaiVersionSpec {
  id: number;
  name: string;
  files: CivitaiFileSpec[];
  /** Downloads need a logged-in user (401 without a token). */
  requiresLogin?: boolean;
}

export interface CivitaiModelSpec {
  id: number;
  name: string;
  type?: string;
  /** Newest first, as Civitai lists them. */
  versions: CivitaiVersionSpec[];
}

export interface FakeCivitai {
  /** The CIVITAI_ENDPOINT to configure. */
  url: string;
  api: FileServer;
  cdn: FakeCdn;
  model(spec: CivitaiModelSpec): void;
}

async function startFakeCivitai(token: string | undefined, prefix: string): Promise<FakeCivitai> {
  const api = await startFileServer();
  const cdn = await startFakeCdn();
  const base = `${api.url}${prefix}`;
  const models = new Map<number, CivitaiModelSpec>();
  let nextFileId = 9000;

  const findVersion = (id: number): { model: CivitaiModelSpec; version: CivitaiVersionSpec } | undefined => {
    for (const model of models.values()) {
      const version = model.versions.find((v) => v.id === id);
      if (version) return { model, version };
    }
    return undefined;
  };

  const primaryOf = (v: CivitaiVersionSpec): CivitaiFileSpec | undefined => v.files.find((f) => f.primary) ?? v.files.find((f) => (f.type ?? 'Model') === 'Model') ?? v.files[0];

  const fileJson = (v: CivitaiVersionSpec, f: CivitaiFileSpec): Record<string, unknown> => {
    const primary = primaryOf(v) === f;
    const q = new URLSearchParams();
    if (!primary) {
      q.set('type', f.type ?? 'Model');
      if (f.format && f.type !== 'Training Data') q.set('format', f.format);
    }
    return {
      id: f.id,
      sizeKB: f.data.length / 1024,
      name: f.name,
      type: f.type ?? 'Model',
      pickleScanResult: 'Success',
      virusScanResult: 'Success',
      metadata: { ...(f.format ? { format: f.format } : {}), ...(f.size ? { size: f.size } : {}), ...(f.fp ? { fp: f.fp } : {}) },
      hashes: { AutoV2: (f.sha256 ?? sha256Of(f.data)).slice(0, 10).toUpperCase(), SHA256: (f.sha256 ?? sha256Of(f.data)).toUpperCase(), CRC32: 'DEADBEEF' },
      primary,
      downloadUrl: `${base}/api/download/models/${v.id}${q.size ? `?${q.toString()}` : ''}`,
    };
  };

  const versionJson = (model: CivitaiModelSpec, v: CivitaiVersionSpec, withModel: boolean): Record<string, unknown> => ({
    id: v.id,
    ...(withModel ? { modelId: model.id } : {}),
    name: v.name,
    baseModel: 'SDXL 1.0',
    status: 'Published',
    trainedWords: [],
    ...(withModel ? { model: { name: model.name, type: model.type ?? 'Checkpoint', nsfw: false, poi: false } } : {}),
    files: v.files.map((f) => fileJson(v, f)),
    images: [],
    downloadUrl: `${base}/api/download/models/${v.id}`,
  });

  const authorized = (req: http.IncomingMessage, url: URL): boolean =>
    token !== undefined && (req.headers.authorization === `Bearer ${token}` || url.searchParams.get('token') === token);

  api.route(`${prefix}/api/v1/*`, (req, res) => {
    const url = new URL(req.url ?? '/', api.url);
    const segs = url.pathname.slice(prefix.length).split('/').slice(3);
    if (segs[0] === 'model-versions' && segs[1] === 'by-hash' && segs[2]) {
      const hash = segs[2].toUpperCase();
      for (const model of models.values()) {
        for (const v of model.versions) {
          if (v.files.some((f) => (f.sha256 ?? sha256Of(f.data)).toUpperCase() === hash)) return json(res, 200, versionJson(model, v, true));
        }
      }
      return json(res, 404, { error: 'Model not found' });
    }
    if (segs[0] === 'model-versions' && /^\d+$/.test(segs[1] ?? '')) {
      const found = findVersion(Number(segs[1]));
      if (!found) return json(res, 404, { error: 'Model not found' });
      return json(res, 200, versionJson(found.model, found.version, true));
    }
    if (segs[0] === 'models' && /^\d+$/.test(segs[1] ?? '')) {
      const model = models.get(Number(segs[1]));
      if (!model) return json(res, 404, { error: `No model with id ${segs[1]}` });
      return json(res, 200, {
        id: model.id,
        name: model.name,
        type: model.type ?? 'Checkpoint',
        nsfw: false,
        creator: { username: 'someone' },
        tags: [],
        modelVersions: model.versions.map((v) => versionJson(model, v, false)),
      });
    }
    return json(res, 404, { error: 'Not found' });
  });

  api.route(`${prefix}/api/download/models/*`, (req, res) => {
    const url = new URL(req.url ?? '/', api.url);
    const found = findVersion(Number(url.pathname.split('/').pop()));
    if (!found) return json(res, 404, { error: 'Model not found' });
    const { version } = found;
    if (version.requiresLogin && !authorized(req, url)) return json(res, 401, { error: 'Unauthorized', message: 'The creator of this asset requires you to be logged in to download it' });
    const q = url.searchParams;
    const eq = (a: string | undefined, b: string | null): boolean => b === null || (a ?? '').toLowerCase() === b.toLowerCase();
    const picking = ['type', 'format', 'size', 'fp', 'fileId'].some((k) => q.has(k));
    const file = picking
      ? version.files.find(
          (f) => eq(f.type ?? 'Model', q.get('type')) && eq(f.format, q.get('format')) && eq(f.size, q.get('size')) && eq(f.fp, q.get('fp')) && eq(String(f.id), q.get('fileId')),
        )
      : primaryOf(version);
    if (!file) return json(res, 404, { error: 'Model file not found' });
    res.writeHead(307, { Location: cdn.put(`model/${crypto.randomBytes(6).toString('hex')}`, file.data, file.name) });
    res.end();
  });

  return {
    url: base,
    api,
    cdn,
    model(spec) {
      for (const v of spec.versions) for (const f of v.files) f.id ??= nextFileId++;
      models.set(spec.id, spec);
    },
  };
}

// ---------------------------------------------------------------- together

export interface FakeHub {
  hf: FakeHf;
  civitai: FakeCivitai;
  /** Another host, to redirect to. */
  other: FileServer;
  /** Every request any of the hosts (CDNs and `other` included) received. */
  allRequests(): Array<{ host: string; url: string; headers: http.IncomingHttpHeaders }>;
  close(): Promise<void>;
}

export interface FakeHubOptions {
  hfToken?: string;
  civitaiToken?: string;
  /** @default 3 */
  pageSize?: number;
  /** Path prefixes of the endpoints (a mirror under `/hf`). @default '' */
  hfPrefix?: string;
  civitaiPrefix?: string;
}

export async function startFakeHub(options: FakeHubOptions = {}): Promise<FakeHub> {
  const hf = await startFakeHf(options.hfToken, options.hfPrefix ?? '', options.pageSize ?? 3);
  const civitai = await startFakeCivitai(options.civitaiToken, options.civitaiPrefix ?? '');
  const other = await startFileServer();
  const servers = [hf.api, hf.cdn.server, civitai.api, civitai.cdn.server, other];
  return {
    hf,
    civitai,
    other,
    allRequests: () => servers.flatMap((s) => s.requests.map((r) => ({ host: new URL(s.url).host, url: r.url, headers: r.headers }))),
    async close() {
      await Promise.all([hf.api.close(), hf.cdn.close(), civitai.api.close(), civitai.cdn.close(), other.close()]);
    },
  };
}

/** The AppError a promise is rejected with (and that it is one). */
export async function failure(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}
