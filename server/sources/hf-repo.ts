/**
 * Hugging Face repositories and folders as lists of files: what intake turns into a group of
 * downloads for `https://huggingface.co/<org>/<repo>` or `…/tree/<rev>[/<folder>]`.
 *
 * The revision is pinned first (`GET /api/<type>s/<repo>/revision/<rev>` → `sha`), then the tree
 * is listed at that commit (`GET /api/<type>s/<repo>/tree/<sha>[/<folder>]?recursive=true`,
 * following `Link: <…>; rel="next"`), and every file URL is `resolve/<sha>/<path>`: a branch that
 * moves while the listing is paged or the files are fetched never mixes two versions.
 */
import { AppError, badRequest } from '../errors';
import { createApiClient, nextLink, reachOf, type ApiClient, type ApiErrorInfo, type DescribeError, type ReachOptions } from './meta/api-client';
import { pathFilter } from './meta/glob';
import { endpoint as makeEndpoint, type Endpoint } from './types';

export { gitBlobSha1, createGitBlobHasher, type GitBlobHasher } from '../downloader/git-blob';
export { globToRegExp, pathFilter } from './meta/glob';

export type HfRepoType = 'model' | 'dataset';

/** A repository (or one folder of it) at a revision, as a URL named it. */
export interface HfRepoRef {
  /** `org/name`. */
  repo: string;
  type: HfRepoType;
  /** As given: a branch, a tag, `refs/pr/N` or a commit. `main` when the URL names none. */
  revision: string;
  /** A folder in the repository, without slashes at either end; '' for the whole repository. */
  path: string;
  /** The repository's web page, for messages ("accept its licence at …"). */
  page: string;
}

export interface HfRepoFile {
  /** Path in the repository, `/`-separated. */
  path: string;
  /** `…/resolve/<sha>/<path>`: the file at the pinned commit. */
  url: string;
  /** Bytes of the file itself (the LFS object's size for an LFS file, not its pointer's). */
  size: number;
  /** LFS files: the object id, which is the sha256 of the file. */
  sha256?: string;
  /** Files kept in git: the blob id, sha1 of `blob <size>\0` + bytes (see `gitBlobSha1`). */
  gitBlobId?: string;
  /** `<folder>/<repo name>/<path in repo>`, relative to the models folder. */
  dest: string;
  /** `dest` split for `resolveDest(modelsDir, folder, filename)`. */
  folder: string;
  filename: string;
}

export interface HfRepoListing {
  repo: string;
  type: HfRepoType;
  /** The revision as the URL gave it. */
  requested: string;
  /** The commit it pointed to when it was looked up: every file URL uses it. */
  revision: string;
  /** The folder listed, '' for the whole repository. */
  path: string;
  page: string;
  files: HfRepoFile[];
  /** Sum of the files' sizes. */
  totalSize: number;
  /** Files of the listing left out by include/exclude. */
  excluded: number;
}

/** Besides its own: how its API is reached (agents, proxies, time limits), passed to the client as they are. */
export interface HfMetadataOptions extends ReachOptions {
  /** `HF_ENDPOINT` (a mirror's base URL, path prefix allowed). */
  endpoint: string;
  /** `HF_TOKEN`: `Authorization: Bearer` to the endpoint's host only, at every hop. */
  token?: string;
}

export interface HfListOptions {
  /** The models folder to put the repository in (`diffusion_models`): files go to `<folder>/<repo name>/<path>`. */
  folder: string;
  /** Glob patterns as `hf download --include` (`*.safetensors`, `vae/`); none: every file. */
  include?: readonly string[];
  /** Glob patterns as `hf download --exclude`. */
  exclude?: readonly string[];
  signal?: AbortSignal;
  /** Most files a listing may keep after filtering. @default 5000 */
  maxFiles?: number;
  /** Most pages followed. @default 1000 */
  maxPages?: number;
}

export interface HfMetadata {
  /** The repository or folder a URL names; undefined for single-file URLs (`blob`/`resolve`) and other pages. */
  parse(url: URL): HfRepoRef | undefined;
  /** The commit a revision points to now. */
  pin(ref: HfRepoRef, signal?: AbortSignal): Promise<string>;
  /** Pins the revision, lists the files at that commit and filters them. Throws an AppError. */
  list(ref: HfRepoRef, options: HfListOptions): Promise<HfRepoListing>;
}

/** First path segments of huggingface.co that are site pages, not user or organisation names. */
const RESERVED = new Set([
  'api', 'spaces', 'models', 'docs', 'settings', 'organizations', 'collections', 'papers', 'blog', 'join', 'login', 'logout',
  'pricing', 'tasks', 'learn', 'posts', 'chat', 'new', 'new-dataset', 'new-space', 'notifications', 'search', 'enterprise',
  'inference-endpoints', 'terms-of-service', 'privacy', 'huggingchat', 'welcome', 'oauth', 'static-proxy', 'front', 'assets',
]);

const COMMIT = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

const decode = (seg: string): string | undefined => {
  try {
    return decodeURIComponent(seg);
  } catch {
    return undefined;
  }
};

/** Each segment percent-encoded, the slashes kept. */
const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

/** A path from the listing, made safe as a relative path: no empty, `.` or `..` part, no backslash or control character. */
function safeRepoPath(p: unknown): string | undefined {
  if (typeof p !== 'string' || p === '' || p.length > 4096) return undefined;
  const parts = p.split('/');
  if (parts.some((s) => s === '' || s === '.' || s === '..' || s.includes('\\') || /[\p{Cc}]/u.test(s))) return undefined;
  return p;
}

/** Parses a repository or folder URL under `endpoint` (huggingface.co or a mirror). */
export function parseHfRepoUrl(url: URL, endpoint: string | Endpoint): HfRepoRef | undefined {
  const ep = typeof endpoint === 'string' ? makeEndpoint(endpoint) : endpoint;
  if (!ep.contains(url)) return undefined;
  const raw = ep.segments(url).map(decode);
  if (raw.some((s) => s === undefined)) return undefined;
  let segs = raw as string[];
  let type: HfRepoType = 'model';
  if (segs[0] === 'datasets') {
    type = 'dataset';
    segs = segs.slice(1);
  } else if (segs[0] !== undefined && RESERVED.has(segs[0])) {
    return undefined;
  }
  if (segs.length < 2) return undefined;
  const [org, name] = segs as [string, string];
  const validName = (s: string): boolean => /^[\w.-]+$/.test(s) && s !== '.' && s !== '..';
  if (!validName(org) || !validName(name)) return undefined;
  const repo = `${org}/${name}`;
  const prefix = ep.base.pathname.replace(/\/+$/, '');
  const page = `${ep.base.origin}${prefix}${type === 'dataset' ? '/datasets' : ''}/${repo}`;
  if (segs.length === 2) return { repo, type, revision: 'main', path: '', page };
  if (segs[2] !== 'tree' || segs.length < 4) return undefined;
  let rest = segs.slice(3);
  // The Hub's pages spell `refs/pr/1` as one segment (`refs%2Fpr%2F1`); taken unencoded as well.
  let revision = rest[0]!;
  if (revision === 'refs' && (rest[1] === 'pr' || rest[1] === 'convert') && rest[2] !== undefined) {
    revision = rest.slice(0, 3).join('/');
    rest = rest.slice(3);
  } else {
    rest = rest.slice(1);
  }
  if (revision === '') return undefined;
  const path = rest.join('/');
  if (path !== '' && safeRepoPath(path) === undefined) return undefined;
  return { repo, type, revision, path, page };
}

interface TreeEntry {
  type?: unknown;
  path?: unknown;
  size?: unknown;
  oid?: unknown;
  lfs?: { oid?: unknown; size?: unknown } | null;
}

const isSize = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

export function hfMetadata(options: HfMetadataOptions): HfMetadata {
  const ep = makeEndpoint(options.endpoint);
  const { token } = options;
  const base = `${ep.base.origin}${ep.base.pathname.replace(/\/+$/, '')}`;
  const client: ApiClient = createApiClient({
    label: 'Hugging Face',
    headersFor: (hop): Record<string, string> => (token && ep.isHost(hop) ? { Authorization: `Bearer ${token}` } : {}),
    ...reachOf(options),
  });

  const apiBase = (ref: HfRepoRef): string => `${base}/api/${ref.type}s/${ref.repo.split('/').map(encodeURIComponent).join('/')}`;

  /** The Hub's words for its error answers, from its `X-Error-Code` header and the status. */
  const describe =
    (ref: HfRepoRef, what: { revision: string; path?: string }): DescribeError =>
    (info: ApiErrorInfo) => {
      if (!ep.isHost(info.url)) return undefined; // another host after a redirect: its own words
      const code = info.headers['x-error-code'];
      const message = info.headers['x-error-message'] ?? '';
      const said = info.said ? ` (${info.said})` : '';
      const kind = ref.type === 'dataset' ? 'dataset' : 'repository';
      switch (info.status) {
        case 401:
          if (token && (/invalid credentials/i.test(message) || (code !== 'GatedRepo' && code !== 'RepoNotFound'))) {
            return { code: 'HF_TOKEN_REFUSED', message: 'Hugging Face answered 401: it did not accept HF_TOKEN (expired, revoked or mistyped?)' };
          }
          if (code === 'GatedRepo') {
            return { code: 'HF_GATED', message: `Hugging Face answered 401: this ${kind} is gated — set HF_TOKEN and accept its licence at ${ref.page}` };
          }
          return {
            code: 'HF_REPO_NOT_FOUND',
            message: token
              ? `Hugging Face answered 401: there is no ${kind} ${ref.repo}, or the account of HF_TOKEN cannot see it`
              : `Hugging Face answered 401: there is no ${kind} ${ref.repo}, or it is private or gated — if you have access, set HF_TOKEN`,
          };
        case 403:
          if (code === 'GatedRepo' || /gated|authorized list|restricted/i.test(info.said ?? '')) {
            return {
              code: 'HF_GATED',
              message: token
                ? `Hugging Face answered 403: this ${kind} is gated and the account of HF_TOKEN has no access yet — accept its licence at ${ref.page}`
                : `Hugging Face answered 403: this ${kind} is gated — set HF_TOKEN and accept its licence at ${ref.page}`,
            };
          }
          return { code: 'HF_FORBIDDEN', message: `Hugging Face answered 403: access to ${ref.repo} is forbidden${said}` };
        case 404:
          if (code === 'RevisionNotFound') {
            return { code: 'HF_REVISION_NOT_FOUND', message: `Hugging Face answered 404: ${ref.repo} has no branch, tag or commit "${what.revision}"` };
          }
          if (code === 'EntryNotFound' || (what.path && code !== 'RepoNotFound')) {
            return { code: 'HF_PATH_NOT_FOUND', message: `Hugging Face answered 404: ${ref.repo} has no folder "${what.path ?? ''}" at ${ref.revision}` };
          }
          return { code: 'HF_REPO_NOT_FOUND', message: `Hugging Face answered 404: there is no ${kind} ${ref.repo} (check the URL)` };
        case 429:
          return `Hugging Face answered 429: too many requests — try again in a while${token ? '' : ' (requests with HF_TOKEN get a higher limit)'}`;
        default:
          return info.status >= 500 ? `Hugging Face answered ${info.status}: a server error${said}; try again later` : undefined;
      }
    };

  const badAnswer = (what: string): AppError => new AppError('HF_BAD_ANSWER', `Hugging Face answered the ${what} request with something unexpected; is HF_ENDPOINT a Hugging Face Hub?`, { status: 502 });

  const pin = async (ref: HfRepoRef, signal?: AbortSignal): Promise<string> => {
    const url = new URL(`${apiBase(ref)}/revision/${encodeURIComponent(ref.revision)}`);
    const res = await client.getJson<{ sha?: unknown }>(url, { ...(signal ? { signal } : {}), describeError: describe(ref, { revision: ref.revision }) });
    const sha = res.data && typeof res.data === 'object' ? res.data.sha : undefined;
    if (typeof sha !== 'string' || !COMMIT.test(sha)) throw badAnswer('revision');
    if (COMMIT.test(ref.revision) && sha !== ref.revision) throw badAnswer('revision'); // a commit pins itself
    return sha;
  };

  return {
    parse: (url) => parseHfRepoUrl(url, ep),
    pin,
    async list(ref, opts) {
      const folder = opts.folder.replace(/\/+$/, '');
      if (folder === '') throw badRequest('INVALID_FOLDER', 'Expected `folder` to be a model folder such as "diffusion_models"');
      const keep = pathFilter(opts.include, opts.exclude);
      const maxFiles = opts.maxFiles ?? 5000;
      const maxPages = opts.maxPages ?? 1000;
      const signal = opts.signal;

      const sha = await pin(ref, signal);
      const repoName = ref.repo.split('/').pop()!;
      const prefix = ref.type === 'dataset' ? '/datasets' : '';
      let url: URL | undefined = new URL(`${apiBase(ref)}/tree/${sha}${ref.path ? `/${encodePath(ref.path)}` : ''}`);
      url.searchParams.set('recursive', 'true');
      const seenPages = new Set<string>();
      const byPath = new Map<string, HfRepoFile>();
      let excluded = 0;
      for (let pages = 0; url; pages++) {
        if (pages >= maxPages) {
          throw new AppError('HF_TOO_MANY_FILES', `${ref.repo} lists more than ${maxPages} pages of files; give a folder (…/tree/<rev>/<folder>) or --include patterns`, { status: 400 });
        }
        seenPages.add(url.toString());
        const res: { data: unknown; url: URL; headers: Record<string, string> } = await client.getJson<unknown>(url, {
          ...(signal ? { signal } : {}),
          describeError: describe(ref, { revision: ref.revision, path: ref.path }),
        });
        if (!Array.isArray(res.data)) throw badAnswer('tree');
        for (const e of res.data as TreeEntry[]) {
          if (!e || typeof e !== 'object') throw badAnswer('tree');
          if (e.type === 'directory') continue;
          if (e.type !== 'file') continue; // submodules and whatever comes next: nothing to fetch
          const path = safeRepoPath(e.path);
          if (path === undefined) {
            throw new AppError('HF_BAD_ANSWER', `Hugging Face listed a file of ${ref.repo} with an unsafe path (${JSON.stringify(String(e.path)).slice(0, 200)}); nothing was added`, { status: 502 });
          }
          if (ref.path && path !== ref.path && !path.startsWith(`${ref.path}/`)) throw badAnswer('tree');
          if (byPath.has(path)) continue; // pages that overlap
          if (!keep(path)) {
            excluded++;
            continue;
          }
          const lfs = e.lfs && typeof e.lfs === 'object' ? e.lfs : undefined;
          const size = lfs && isSize(lfs.size) ? lfs.size : e.size;
          if (!isSize(size)) throw badAnswer('tree');
          const file: HfRepoFile = {
            path,
            url: `${base}${prefix}/${ref.repo}/resolve/${sha}/${encodePath(path)}`,
            size,
            dest: `${folder}/${repoName}/${path}`,
            folder: `${folder}/${repoName}${path.includes('/') ? `/${path.slice(0, path.lastIndexOf('/'))}` : ''}`,
            filename: path.slice(path.lastIndexOf('/') + 1),
          };
          if (lfs) {
            const oid = typeof lfs.oid === 'string' ? lfs.oid.toLowerCase() : '';
            if (/^[0-9a-f]{64}$/.test(oid)) file.sha256 = oid;
          } else if (typeof e.oid === 'string' && /^[0-9a-f]{40}$/i.test(e.oid)) {
            file.gitBlobId = e.oid.toLowerCase();
          }
          byPath.set(path, file);
          if (byPath.size > maxFiles) {
            throw new AppError(
              'HF_TOO_MANY_FILES',
              `${ref.repo} has more than ${maxFiles} files${ref.path ? ` under ${ref.path}` : ''} that match; narrow it with a folder URL or include/exclude patterns`,
              { status: 400 },
            );
          }
        }
        const next = nextLink(res.headers.link, res.url);
        if (next && !ep.isHost(next)) {
          // The token would not go there, and a listing is the Hub's own: a page elsewhere is not trusted.
          throw new AppError('HF_BAD_ANSWER', `Hugging Face pointed the next page of the listing to another host (${next.host}); not followed`, { status: 502 });
        }
        if (next && seenPages.has(next.toString())) throw new AppError('HF_BAD_ANSWER', 'Hugging Face paged the listing in a loop; not followed', { status: 502 });
        url = next;
      }
      const files = [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      if (files.length === 0) {
        const filtered = excluded > 0 ? ` (${excluded} left out by include/exclude)` : '';
        throw new AppError('HF_NO_FILES', `${ref.repo} has no files${ref.path ? ` under ${ref.path}` : ''} at ${ref.revision}${filtered}: nothing to download`, { status: 400 });
      }
      return {
        repo: ref.repo,
        type: ref.type,
        requested: ref.revision,
        revision: sha,
        path: ref.path,
        page: ref.page,
        files,
        totalSize: files.reduce((n, f) => n + f.size, 0),
        excluded,
      };
    },
  };
}
