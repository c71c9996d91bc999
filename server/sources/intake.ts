import path from 'node:path';
import { parse as parseDisposition } from 'content-disposition';
import type { AddOptions, Downloader } from '../downloader/downloader';
import type { OpenedResponse } from '../net/http-client';
import { openSource } from '../downloader/source';
import type { Agent } from '../net/agent';
import { failureFor, refuseNonFile } from '../downloader/response';
import { AppError, badRequest } from '../errors';
import { filenameFromUrl, resolveDest, sanitizeFilename } from '../disk/paths';
import type { AddRequest, AddResult } from '../protocol/wire';
import type { Source, Sources } from '.';
import { parseSourceUrl } from '../net/url-policy';

export interface IntakeDeps {
  /** `add` may settle later: fleet mode locks the destination first (server/fleet/). */
  downloader: Pick<Downloader, 'agent'> & { add(req: AddRequest, options?: AddOptions): AddResult | Promise<AddResult> };
  sources: Sources;
  modelsDir: string;
  /** Longest wait for the server's answer when asking it for the file's name. @default 15000 */
  probeTimeoutMs?: number;
}

/** Extensions of pages and scripts: a URL ending in one names the page that serves the file, not the file. */
const NOT_A_NAME = new Set(['.html', '.htm', '.php', '.asp', '.aspx', '.jsp', '.cgi']);

const looksLikeFile = (name: string | undefined): name is string => {
  const ext = name ? path.extname(name).toLowerCase() : '';
  return /^\.[a-z0-9]{1,16}$/.test(ext) && !NOT_A_NAME.has(ext);
};

/**
 * Starts a download from what a user gave: checks the URL against its source, settles the file's
 * name (explicit > `Content-Disposition` > URL path), then hands over to the synchronous
 * `Downloader.add`, which owns the duplicate check. The name must be known before the entry exists
 * (`dest` is its key), so when the URL does not end in one (always so for Civitai) the server is
 * asked first: one short GET whose headers are read and whose body is dropped.
 */
export async function intake(req: AddRequest, deps: IntakeDeps, options: AddOptions = {}): Promise<AddResult> {
  const { downloader } = deps;
  if (!req || typeof req !== 'object' || Array.isArray(req)) return downloader.add(req, options);
  const url = parseSourceUrl(req.url);
  deps.sources.check(url);
  if (req.filename !== undefined && req.filename !== '') return downloader.add(req, options);

  // Refuse a bad folder before anything goes over the network.
  resolveDest(deps.modelsDir, req.folder, 'probe');
  const source = deps.sources.resolve(url);
  const fromPath = source.nameInPath ? filenameFromUrl(source.url) : undefined;
  if (looksLikeFile(fromPath)) return downloader.add({ ...req, filename: fromPath }, options);
  if (source.nameInPath && url.pathname.replace(/\/+/g, '') === '') {
    throw badRequest('FILENAME_REQUIRED', 'The URL does not end in a file name; give `filename`');
  }

  const named = await probeName(source, deps.probeTimeoutMs ?? 15_000, downloader.agent);
  const filename = named ?? fromPath;
  if (!filename) {
    throw badRequest('FILENAME_REQUIRED', `${source.label ?? source.url.host} did not say the file's name and the URL does not end in one; give \`filename\``);
  }
  return downloader.add({ ...req, filename }, options);
}

/** The file name a server gives in `Content-Disposition`, as one safe path segment. */
export function nameFromDisposition(header: string | undefined): string | undefined {
  if (!header) return undefined;
  let name: string | undefined;
  try {
    name = parseDisposition(header).parameters.filename;
  } catch {
    // Not RFC 6266 (unquoted spaces, stray semicolons): take the plain parameter if there is one.
    name = /filename\s*=\s*"?([^";]+)"?/i.exec(header)?.[1];
  }
  return name ? sanitizeFilename(name) : undefined;
}

/** Asks the source's server for the file (headers only) and returns the name it gives, if any. */
async function probeName(source: Source, timeoutMs: number, agent: Agent): Promise<string | undefined> {
  const host = source.label ?? source.url.host;
  const signal = AbortSignal.timeout(timeoutMs);
  let res: OpenedResponse;
  try {
    // One byte is enough to see the headers; servers that ignore Range get their body dropped.
    res = await openSource(source, { Range: 'bytes=0-0' }, signal, agent);
  } catch (err) {
    if (signal.aborted) {
      throw new AppError('PROBE_TIMEOUT', `${host} did not answer within ${Math.round(timeoutMs / 1000)} s when asked for the file's name; try again`, { status: 502 });
    }
    const e = err instanceof AppError ? err : new AppError('NETWORK', (err as Error).message);
    // Keep our own refusals (a forbidden address is a 400); a host that cannot be reached is a 502.
    throw new AppError(e.code, `Could not ask ${host} for the file's name: ${e.message}`, { status: e.status >= 400 && e.status < 500 ? e.status : 502, cause: err });
  }
  try {
    if (res.status >= 400 && res.status !== 416) {
      // The source's words for it, as the transfer would say them; a refusal of the request is a
      // 400, the upstream being unwell (5xx, 408, 429) a 502.
      const failure = failureFor(res, source);
      throw new AppError(failure.code, failure.message, { status: failure.retryable ? 502 : 400 });
    }
    // After redirects the URL may end in the name (a release asset); a source whose URLs never
    // carry the name (Civitai's storage paths are ids) relies on Content-Disposition alone.
    const final = source.nameInPath ? filenameFromUrl(res.url) : undefined;
    const name = nameFromDisposition(res.headers['content-disposition']) ?? (looksLikeFile(final) ? final : undefined);
    await refuseNonFile(res, name ?? '', source);
    return name;
  } finally {
    res.body.destroy();
  }
}

