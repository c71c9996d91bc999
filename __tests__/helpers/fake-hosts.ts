/**
 * Fake Hugging Face and Civitai hosts on loopback, each in front of a fake storage CDN on another
 * port, reproducing what the real ones do to a downloader:
 * - the API host answers a file URL with a 302/307 to a signed CDN URL (X-Amz-Signature in the
 *   query, the file name in `response-content-disposition`, as S3 does);
 * - Hugging Face puts X-Linked-Size / X-Linked-Etag (the LFS sha256) on that redirect, and serves
 *   small non-LFS files itself with a git-sha1 ETag;
 * - gated repositories answer 401 without a token and 403 before the licence is accepted;
 * - Civitai takes its token as `?token=`, answers 401 JSON or its login page without one;
 * - the CDN answers 400 to any request that carries an Authorization header (S3 does: "only one
 *   auth mechanism allowed") and 403 to an unsigned one.
 * Every request is in the file servers' `requests` logs, headers included, for assertions.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import { parseRange, startFileServer, type FileServer } from './file-server';

export interface FakeCdn {
  server: FileServer;
  /** Stores bytes under a key; returns a signed URL that serves them with this file name. */
  put(key: string, data: Buffer, filename: string): string;
  close(): Promise<void>;
}

/** The Content-Disposition real CDNs send: an ASCII fallback and the UTF-8 name. */
export const disposition = (name: string): string =>
  `attachment; filename="${name.replace(/[^\x20-\x7e]/g, '_').replace(/"/g, '')}"; filename*=UTF-8''${encodeURIComponent(name)}`;

export async function startFakeCdn(): Promise<FakeCdn> {
  const server = await startFileServer();
  const blobs = new Map<string, { data: Buffer; signature: string }>();
  server.route('/files/*', (req, res) => {
    const url = new URL(req.url ?? '/', server.url);
    const blob = blobs.get(url.pathname.slice('/files/'.length));
    if (req.headers.authorization) {
      res.writeHead(400, { 'Content-Type': 'application/xml' });
      res.end('<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>');
      return;
    }
    if (!blob || url.searchParams.get('X-Amz-Signature') !== blob.signature) {
      res.writeHead(403, { 'Content-Type': 'application/xml' });
      res.end('<Error><Code>SignatureDoesNotMatch</Code></Error>');
      return;
    }
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      ETag: `"${crypto.createHash('md5').update(blob.data).digest('hex')}"`,
    };
    const cd = url.searchParams.get('response-content-disposition');
    if (cd) headers['Content-Disposition'] = cd;
    const range = typeof req.headers.range === 'string' ? parseRange(req.headers.range, blob.data.length) : undefined;
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${blob.data.length}` });
      res.end();
      return;
    }
    const body = range ? blob.data.subarray(range.start, range.end) : blob.data;
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end - 1}/${blob.data.length}`;
    res.writeHead(range ? 206 : 200, { ...headers, 'Content-Length': body.length });
    res.end(body);
  });
  return {
    server,
    put(key, data, filename) {
      const signature = crypto.randomBytes(16).toString('hex');
      blobs.set(key, { data, signature });
      const q = new URLSearchParams({ 'X-Amz-Expires': '3600', 'X-Amz-Signature': signature, 'response-content-disposition': disposition(filename) });
      return `${server.url}/files/${key}?${q}`;
    },
    close: () => server.close(),
  };
}

export interface HfRepoOptions {
  /** Needs a token (401 without). */
  gated?: boolean;
  /** With `gated`: the token's account has accepted the licence (else 403). @default true */
  licenceAccepted?: boolean;
}

export interface HfFileOptions {
  /** Stored in git, not LFS: served by the API host itself, with the git sha1 as ETag. */
  small?: boolean;
  /** Announce this as the sha256 (X-Linked-Etag) instead of the real one. */
  linkedEtag?: string;
}

export interface FakeHf {
  /** The HF_ENDPOINT to configure. */
  url: string;
  api: FileServer;
  cdn: FakeCdn;
  repo(name: string, options?: HfRepoOptions): void;
  /** Adds `<repo>/resolve/<rev>/<path>`; returns the bytes and their sha256. */
  file(repo: string, rev: string, filePath: string, data: Buffer, options?: HfFileOptions): { data: Buffer; sha256: string };
  close(): Promise<void>;
}

const json = (res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void => {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
};

export async function startFakeHf(token: string): Promise<FakeHf> {
  const api = await startFileServer();
  const cdn = await startFakeCdn();
  const repos = new Map<string, Required<HfRepoOptions>>();
  const files = new Map<string, { data: Buffer; sha256: string } & HfFileOptions>();

  api.route('/*', (req, res) => {
    const url = new URL(req.url ?? '/', api.url);
    const m = /^\/([^/]+\/[^/]+)\/(resolve|blob)\/([^/]+)\/(.+)$/.exec(url.pathname);
    const repo = m && repos.get(m[1]!);
    if (!m || !repo) return json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
    if (m[2] === 'blob') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<html><head><title>${m[4]} · ${m[1]} at ${m[3]}</title></head><body>…</body></html>`);
      return;
    }
    const authorized = req.headers.authorization === `Bearer ${token}`;
    if (repo.gated && !authorized) {
      return json(res, 401, { error: `Access to model ${m[1]} is restricted. You must have access to it and be authenticated to access it. Please log in.` }, { 'X-Error-Code': 'GatedRepo' });
    }
    if (repo.gated && !repo.licenceAccepted) {
      return json(res, 403, { error: `Access to model ${m[1]} is restricted and you are not in the authorized list.` }, { 'X-Error-Code': 'GatedRepo' });
    }
    const file = files.get(`${m[1]}/${m[3]}/${decodeURIComponent(m[4]!)}`);
    if (!file) return json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
    const name = decodeURIComponent(m[4]!).split('/').pop()!;
    if (file.small) {
      const sha1 = crypto.createHash('sha1').update(`blob ${file.data.length}\0`).update(file.data).digest('hex');
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': file.data.length, ETag: `"${sha1}"`, 'Content-Disposition': disposition(name) });
      res.end(file.data);
      return;
    }
    const location = cdn.put(`${file.sha256}-${crypto.randomBytes(4).toString('hex')}`, file.data, name);
    res.writeHead(302, {
      Location: location,
      'X-Linked-Size': String(file.data.length),
      'X-Linked-Etag': `"${file.linkedEtag ?? file.sha256}"`,
      ETag: `"${file.linkedEtag ?? file.sha256}"`,
      'Content-Type': 'text/plain; charset=utf-8',
    });
    res.end(`Found. Redirecting to ${location}`);
  });

  return {
    url: api.url,
    api,
    cdn,
    repo: (name, options = {}) => repos.set(name, { gated: false, licenceAccepted: true, ...options }),
    file(repo, rev, filePath, data, options = {}) {
      const sha256 = crypto.createHash('sha256').update(data).digest('hex');
      files.set(`${repo}/${rev}/${filePath}`, { data, sha256, ...options });
      return { data, sha256 };
    },
    close: async () => {
      await api.close();
      await cdn.close();
    },
  };
}

export interface CivitaiVersionOptions {
  /** The creator requires a logged-in user: 401 JSON without a valid token. */
  requiresLogin?: boolean;
  /** Without a valid token, redirect to the HTML login page instead of the 401. */
  loginPage?: boolean;
}

export interface FakeCivitai {
  /** The CIVITAI_ENDPOINT to configure. */
  url: string;
  api: FileServer;
  cdn: FakeCdn;
  /** Adds model version `id` whose file is called `filename`. */
  version(id: number, filename: string, data: Buffer, options?: CivitaiVersionOptions): { data: Buffer; sha256: string };
  close(): Promise<void>;
}

export async function startFakeCivitai(token: string): Promise<FakeCivitai> {
  const api = await startFileServer();
  const cdn = await startFakeCdn();
  const versions = new Map<string, { filename: string; data: Buffer } & CivitaiVersionOptions>();

  api.route('/login', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!DOCTYPE html><html><head><title>Sign in | Civitai</title></head><body><form>…</form></body></html>');
  });
  api.route('/api/download/models/*', (req, res) => {
    const url = new URL(req.url ?? '/', api.url);
    const v = versions.get(url.pathname.split('/').pop()!);
    if (!v) return json(res, 404, { error: 'Model version not found' });
    if (v.requiresLogin && url.searchParams.get('token') !== token) {
      if (v.loginPage) {
        res.writeHead(307, { Location: `/login?returnUrl=${encodeURIComponent(url.pathname)}` });
        res.end();
        return;
      }
      return json(res, 401, { error: 'Unauthorized', message: 'The creator of this asset requires you to be logged in to download it' });
    }
    res.writeHead(307, { Location: cdn.put(`model/${crypto.randomBytes(6).toString('hex')}`, v.data, v.filename) });
    res.end();
  });

  return {
    url: api.url,
    api,
    cdn,
    version(id, filename, data, options = {}) {
      versions.set(String(id), { filename, data, ...options });
      return { data, sha256: crypto.createHash('sha256').update(data).digest('hex') };
    },
    close: async () => {
      await api.close();
      await cdn.close();
    },
  };
}
