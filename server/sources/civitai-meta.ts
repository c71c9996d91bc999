/**
 * Civitai's metadata for a download URL or a model page: which file it serves, under what name,
 * how large, and its SHA256, all known before a byte is fetched (the download URL itself only
 * names the file in the storage's `Content-Disposition`).
 *
 * - `…/api/download/models/<versionId>[?type=&format=&size=&fp=&fileId=]` and
 *   `…/models/<modelId>[/<slug>]?modelVersionId=<versionId>` → `GET /api/v1/model-versions/<versionId>`;
 * - `…/models/<modelId>` with no version → `GET /api/v1/models/<modelId>`, its latest version (the
 *   first of `modelVersions`, as the model page shows it), and the result says so in `note`;
 * - `GET /api/v1/model-versions/by-hash/<sha256>`: which version a file is.
 *
 * CIVITAI_TOKEN goes as `Authorization: Bearer` to the Civitai host only (never to another host
 * after a redirect), and never into a URL this returns.
 */
import { AppError } from '../errors';
import { sanitizeFilename } from '../disk/paths';
import { redactUrl } from '../net/url-policy';
import { createApiClient, reachOf, type ApiClient, type ApiErrorInfo, type DescribeError, type ReachOptions } from './meta/api-client';
import { endpoint as makeEndpoint, type Endpoint } from './types';

/** What a Civitai URL names. */
export type CivitaiRef =
  | {
      kind: 'version';
      versionId: number;
      /** The page's model, when the URL was a model page (`/models/<id>?modelVersionId=`). */
      modelId?: number;
      /** A file other than the primary one, as the download URL's query picks it. */
      pick: CivitaiFilePick;
    }
  | { kind: 'model'; modelId: number };

/** The download route's file selectors (`?type=Training%20Data`, `?type=Model&format=PickleTensor`). */
export interface CivitaiFilePick {
  type?: string;
  format?: string;
  size?: string;
  fp?: string;
  fileId?: number;
}

export interface CivitaiFileMeta {
  versionId: number;
  modelId?: number;
  modelName?: string;
  versionName?: string;
  fileId?: number;
  /** The file's name as Civitai gives it (made a safe single path segment). */
  filename: string;
  /** Bytes, from `sizeKB` (Civitai keeps bytes / 1024). */
  size?: number;
  /** Lower-case hex, from `hashes.SHA256`. */
  sha256?: string;
  /** `Model`, `Training Data`, `VAE`, … */
  type?: string;
  /** `SafeTensor`, `PickleTensor`, `GGUF`, … */
  format?: string;
  /** The URL to fetch, on the Civitai host, without any token. */
  downloadUrl: string;
  /** Something the user should know: the version was picked for them. */
  note?: string;
}

/** Besides its own: how its API is reached (agents, proxies, time limits), passed to the client as they are. */
export interface CivitaiMetadataOptions extends ReachOptions {
  /** `CIVITAI_ENDPOINT`. */
  endpoint: string;
  /** `CIVITAI_TOKEN`: `Authorization: Bearer` to the Civitai host only. */
  token?: string;
}

export interface CivitaiMetadata {
  /** The version or model a Civitai URL names; undefined for any other URL. */
  parse(url: URL): CivitaiRef | undefined;
  /** The file a ref downloads, with its name, size and SHA256. Throws an AppError. */
  resolve(ref: CivitaiRef, signal?: AbortSignal): Promise<CivitaiFileMeta>;
  /** The version and file whose SHA256 this is; undefined when Civitai knows none. */
  byHash(sha256: string, signal?: AbortSignal): Promise<CivitaiFileMeta | undefined>;
}

interface ApiFile {
  id?: unknown;
  name?: unknown;
  type?: unknown;
  sizeKB?: unknown;
  primary?: unknown;
  metadata?: { format?: unknown; size?: unknown; fp?: unknown } | null;
  hashes?: Record<string, unknown> | null;
  downloadUrl?: unknown;
}

interface ApiVersion {
  id?: unknown;
  modelId?: unknown;
  name?: unknown;
  model?: { name?: unknown } | null;
  files?: unknown;
  downloadUrl?: unknown;
}

interface ApiModel {
  id?: unknown;
  name?: unknown;
  modelVersions?: unknown;
}

const KEY_HINT = 'an API key from civitai.com/user/account';
const ID = /^\d{1,10}$/;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined);
const same = (a: unknown, b: string | undefined): boolean => b === undefined || (typeof a === 'string' && a.toLowerCase() === b.toLowerCase());

/** Parses a Civitai download URL or model page under `endpoint`. */
export function parseCivitaiUrl(url: URL, endpoint: string | Endpoint): CivitaiRef | undefined {
  const ep = typeof endpoint === 'string' ? makeEndpoint(endpoint) : endpoint;
  if (!ep.contains(url)) return undefined;
  const segs = ep.segments(url);
  const q = url.searchParams;
  if (segs[0] === 'api' && segs[1] === 'download' && segs[2] === 'models' && ID.test(segs[3] ?? '') && segs.length === 4) {
    const pick: CivitaiFilePick = {};
    for (const key of ['type', 'format', 'size', 'fp'] as const) {
      const v = q.get(key)?.trim();
      if (v) pick[key] = v;
    }
    const fileId = q.get('fileId');
    if (fileId && ID.test(fileId)) pick.fileId = Number(fileId);
    return { kind: 'version', versionId: Number(segs[3]), pick };
  }
  if (segs[0] === 'models' && ID.test(segs[1] ?? '') && segs.length <= 3) {
    const modelId = Number(segs[1]);
    const v = q.get('modelVersionId');
    if (v && ID.test(v)) return { kind: 'version', versionId: Number(v), modelId, pick: {} };
    return { kind: 'model', modelId };
  }
  return undefined;
}

export function civitaiMetadata(options: CivitaiMetadataOptions): CivitaiMetadata {
  const ep = makeEndpoint(options.endpoint);
  const { token } = options;
  const base = `${ep.base.origin}${ep.base.pathname.replace(/\/+$/, '')}`;
  const client: ApiClient = createApiClient({
    label: 'Civitai',
    headersFor: (hop): Record<string, string> => (token && ep.isHost(hop) ? { Authorization: `Bearer ${token}` } : {}),
    ...reachOf(options),
  });

  const describe =
    (what: string): DescribeError =>
    (info: ApiErrorInfo) => {
      if (!ep.isHost(info.url)) return undefined;
      const said = info.said ? ` (${info.said})` : '';
      switch (info.status) {
        case 401:
          return {
            code: 'CIVITAI_UNAUTHORIZED',
            message: token
              ? `Civitai answered 401: CIVITAI_TOKEN was not accepted (create a new one?)${said}`
              : `Civitai answered 401: ${what} needs a Civitai account — set CIVITAI_TOKEN to ${KEY_HINT}`,
          };
        case 403:
          return {
            code: 'CIVITAI_FORBIDDEN',
            message: `Civitai answered 403: ${what} is not available to ${token ? 'the account of CIVITAI_TOKEN' : 'anonymous requests (set CIVITAI_TOKEN)'} — early access, or its creator restricted it${said}`,
          };
        case 404:
          return { code: 'CIVITAI_NOT_FOUND', message: `Civitai answered 404: there is no ${what}, or it is not published (check the id in the URL)` };
        case 429:
          return 'Civitai answered 429: too many requests — try again in a while';
        default:
          return info.status >= 500 ? `Civitai answered ${info.status}: a server error${said}; try again later` : undefined;
      }
    };

  const badAnswer = (what: string): AppError =>
    new AppError('CIVITAI_BAD_ANSWER', `Civitai answered the ${what} request with something unexpected; is CIVITAI_ENDPOINT Civitai?`, { status: 502 });

  const filesOf = (v: ApiVersion, what: string): ApiFile[] => {
    if (!Array.isArray(v.files)) throw badAnswer(what);
    return (v.files as unknown[]).filter((f): f is ApiFile => !!f && typeof f === 'object');
  };

  const describeFile = (f: ApiFile): string => {
    const meta = [f.metadata?.format, f.metadata?.size, f.metadata?.fp].filter((x) => typeof x === 'string').join(', ');
    return `${str(f.type) ?? 'file'}${meta ? ` (${meta})` : ''}`;
  };

  /** The file the download route would serve: the one the query picks, else the primary. */
  const choose = (files: ApiFile[], pick: CivitaiFilePick, versionId: number): ApiFile => {
    const picking = pick.type !== undefined || pick.format !== undefined || pick.size !== undefined || pick.fp !== undefined || pick.fileId !== undefined;
    if (picking) {
      const matches = files.filter(
        (f) =>
          (pick.fileId === undefined || f.id === pick.fileId) &&
          same(f.type, pick.type) &&
          same(f.metadata?.format, pick.format) &&
          same(f.metadata?.size, pick.size) &&
          same(f.metadata?.fp, pick.fp),
      );
      const found = matches.find((f) => f.primary === true) ?? matches[0];
      if (found) return found;
      const wanted = Object.entries(pick)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(', ');
      const has = files.length ? files.map(describeFile).join('; ') : 'no files';
      throw new AppError('CIVITAI_FILE_NOT_FOUND', `Civitai's model version ${versionId} has no file with ${wanted}; it has: ${has}`, { status: 400 });
    }
    const found = files.find((f) => f.primary === true) ?? files.find((f) => f.type === 'Model') ?? files[0];
    if (!found) throw new AppError('CIVITAI_FILE_NOT_FOUND', `Civitai's model version ${versionId} has no file to download`, { status: 400 });
    return found;
  };

  /** The download URL of a file: Civitai's own when it is on the Civitai host, else built as Civitai builds it. */
  const downloadUrlOf = (f: ApiFile, versionId: number): string => {
    const given = str(f.downloadUrl);
    if (given) {
      try {
        const u = new URL(given);
        const segs = ep.contains(u) ? ep.segments(u) : [];
        if (segs.join('/') === `api/download/models/${versionId}`) return redactUrl(u);
      } catch {
        // not a URL: built below
      }
    }
    const u = new URL(`${base}/api/download/models/${versionId}`);
    if (f.primary !== true) {
      if (str(f.type)) u.searchParams.set('type', str(f.type)!);
      for (const key of ['format', 'size', 'fp'] as const) {
        const v = str(f.metadata?.[key]);
        if (v && !(key === 'format' && f.type === 'Training Data')) u.searchParams.set(key, v);
      }
    }
    return u.toString();
  };

  const metaOf = (v: ApiVersion, f: ApiFile, versionId: number, extra: { modelId?: number; modelName?: string } = {}): CivitaiFileMeta => {
    const name = str(f.name);
    const filename = name ? sanitizeFilename(name) : undefined;
    if (!filename) throw badAnswer('model version');
    const out: CivitaiFileMeta = { versionId, filename, downloadUrl: downloadUrlOf(f, versionId) };
    const modelId = int(v.modelId) ?? extra.modelId;
    if (modelId !== undefined) out.modelId = modelId;
    const modelName = str(v.model?.name) ?? extra.modelName;
    if (modelName) out.modelName = modelName;
    if (str(v.name)) out.versionName = str(v.name)!;
    if (int(f.id)) out.fileId = int(f.id)!;
    if (typeof f.sizeKB === 'number' && Number.isFinite(f.sizeKB) && f.sizeKB >= 0) out.size = Math.round(f.sizeKB * 1024);
    const sha = f.hashes && typeof f.hashes === 'object' ? f.hashes.SHA256 : undefined;
    if (typeof sha === 'string' && /^[0-9a-f]{64}$/i.test(sha.trim())) out.sha256 = sha.trim().toLowerCase();
    if (str(f.type)) out.type = str(f.type)!;
    if (str(f.metadata?.format)) out.format = str(f.metadata?.format)!;
    return out;
  };

  const versionUrl = (id: number): URL => new URL(`${base}/api/v1/model-versions/${id}`);

  return {
    parse: (url) => parseCivitaiUrl(url, ep),

    async resolve(ref, signal) {
      const opts = signal ? { signal } : {};
      if (ref.kind === 'version') {
        const res = await client.getJson<ApiVersion>(versionUrl(ref.versionId), { ...opts, describeError: describe(`model version ${ref.versionId}`) });
        const v = res.data;
        if (!v || typeof v !== 'object' || int(v.id) !== ref.versionId) throw badAnswer('model version');
        const meta = metaOf(v, choose(filesOf(v, 'model version'), ref.pick, ref.versionId), ref.versionId, ref.modelId !== undefined ? { modelId: ref.modelId } : {});
        if (ref.modelId !== undefined && int(v.modelId) !== undefined && int(v.modelId) !== ref.modelId) {
          meta.note = `Version ${ref.versionId} belongs to model ${int(v.modelId)}, not to model ${ref.modelId} of the page`;
        }
        return meta;
      }
      const res = await client.getJson<ApiModel>(new URL(`${base}/api/v1/models/${ref.modelId}`), { ...opts, describeError: describe(`model ${ref.modelId}`) });
      const m = res.data;
      if (!m || typeof m !== 'object' || !Array.isArray(m.modelVersions)) throw badAnswer('model');
      const versions = (m.modelVersions as unknown[]).filter((v): v is ApiVersion => !!v && typeof v === 'object' && int((v as ApiVersion).id) !== undefined);
      // Civitai lists a model's published versions newest first, as its page shows them.
      const latest = versions[0];
      if (!latest) throw new AppError('CIVITAI_FILE_NOT_FOUND', `Civitai's model ${ref.modelId} has no published version to download`, { status: 400 });
      const versionId = int(latest.id)!;
      const modelName = str(m.name);
      const meta = metaOf(latest, choose(filesOf(latest, 'model'), {}, versionId), versionId, { modelId: ref.modelId, ...(modelName ? { modelName } : {}) });
      const name = str(latest.name);
      meta.note = `The page names no version: took the latest${name ? `, "${name}"` : ''} (version ${versionId}${versions.length > 1 ? ` of ${versions.length}` : ''})`;
      return meta;
    },

    async byHash(sha256, signal) {
      const hash = sha256.trim();
      if (!/^[0-9a-f]{64}$/i.test(hash)) throw new AppError('INVALID_HASH', 'Expected a SHA256 as 64 hex digits', { status: 400 });
      let res;
      try {
        res = await client.getJson<ApiVersion>(new URL(`${base}/api/v1/model-versions/by-hash/${hash.toUpperCase()}`), {
          ...(signal ? { signal } : {}),
          describeError: describe(`file with SHA256 ${hash.toLowerCase()}`),
        });
      } catch (err) {
        if (err instanceof AppError && err.code === 'CIVITAI_NOT_FOUND') return undefined;
        throw err;
      }
      const v = res.data;
      const versionId = v && typeof v === 'object' ? int(v.id) : undefined;
      if (versionId === undefined) throw badAnswer('by-hash');
      const files = filesOf(v, 'by-hash');
      const file = files.find((f) => typeof f.hashes?.SHA256 === 'string' && f.hashes.SHA256.toLowerCase() === hash.toLowerCase());
      if (file) return metaOf(v, file, versionId);
      // Civitai matched another of the version's hashes, or a file it no longer lists: its primary file, said.
      const meta = metaOf(v, choose(files, {}, versionId), versionId);
      meta.note = `Civitai matched this SHA256 to version ${versionId}, but none of its files has it: this is the version's primary file`;
      return meta;
    },
  };
}
