import { AppError } from '../errors';
import { checkAddressLiteral, redactUrl } from './url-policy';
import { request, type Agent, type RawBody, type Timeouts } from './raw-http';

/** Headers to add for one hop of a request: credentials go only to the host they belong to. */
export type HeadersFor = (url: URL) => Record<string, string>;

export interface OpenOptions {
  headers: Record<string, string>;
  /** Extra headers per hop (tokens for their own host only). Asked again after every redirect. */
  headersFor?: HeadersFor;
  signal: AbortSignal;
  /** Whose connections the requests use (the Downloader's): per-host caps and idle ones are its own. */
  agent: Agent;
  /** @default 10 */
  maxRedirects?: number;
  /** Time limits of each hop's request, over the agent's (connect, TLS, head, body idle). */
  timeouts?: Partial<Timeouts>;
}

export interface OpenedResponse {
  status: number;
  headers: Record<string, string | undefined>;
  /** Read it as a stream, or move it to a file with `pump()`; destroy it when it is not wanted. */
  body: RawBody;
  /** The URL that answered, after redirects (may carry a signature: never store or log it raw). */
  url: URL;
  /** The headers of the first response, before any redirect (Hugging Face's X-Linked-* live there). */
  firstHeaders: Record<string, string | undefined>;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * GET with redirects followed by hand, so that every hop is checked (http(s) only, no forbidden
 * address, no loop) and credentials are added per host, never carried to a CDN host.
 * No decompression (Accept-Encoding: identity): offsets must be byte offsets of the file.
 */
export async function openStream(start: URL, options: OpenOptions): Promise<OpenedResponse> {
  const maxRedirects = options.maxRedirects ?? 10;
  const seen = new Set<string>();
  let url = start;
  let firstHeaders: Record<string, string | undefined> | undefined;
  for (let hop = 0; ; hop++) {
    // Every hop, the first too (a status-file edit or a source hook could hand us any URL). Through a
    // proxy this literal check still runs; host names are then resolved, and guarded, by the proxy.
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new AppError('UNSUPPORTED_URL', `Only http and https URLs can be downloaded, got ${url.protocol.replace(/:$/, '')}`);
    }
    checkAddressLiteral(url.hostname);
    const headers = {
      'User-Agent': 'model-downloader/0.1',
      'Accept-Encoding': 'identity',
      ...options.headers,
      ...(options.headersFor?.(url) ?? {}),
    };
    let res;
    try {
      res = await request(url, headers, options.signal, { agent: options.agent, ...(options.timeouts ? { timeouts: options.timeouts } : {}) });
    } catch (err) {
      throw networkError(err, url);
    }
    const flat = res.headers;
    firstHeaders ??= flat;
    if (REDIRECTS.has(res.status) && flat.location) {
      res.body.destroy();
      if (hop >= maxRedirects) {
        throw new AppError('TOO_MANY_REDIRECTS', `Gave up after ${maxRedirects} redirects, starting at ${redactUrl(start)}`);
      }
      let next: URL;
      try {
        next = new URL(flat.location, url);
      } catch {
        throw new AppError('BAD_REDIRECT', `${url.host} redirected to an invalid location`);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new AppError('BAD_REDIRECT', `${url.host} redirected to a ${next.protocol} URL, which is not downloaded`);
      }
      const key = next.toString();
      if (seen.has(key)) throw new AppError('REDIRECT_LOOP', `${redactUrl(start)} redirects in a loop (back to ${redactUrl(next)})`);
      seen.add(key);
      url = next;
      continue;
    }
    return { status: res.status, headers: flat, body: res.body, url, firstHeaders };
  }
}

/** Turns a transport failure into an AppError that keeps the errno and says what happened. */
export function networkError(err: unknown, url: URL): AppError {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  if (e.code === 'ABORT_ERR') {
    return new AppError('ABORTED', 'The transfer was aborted', { cause: err });
  }
  const code = e.cause?.code ?? e.code ?? 'NETWORK';
  if (code === 'FORBIDDEN_ADDRESS' && e.cause instanceof AppError) return e.cause;
  if ((err as { cause?: unknown }).cause instanceof AppError) return (err as { cause: AppError }).cause;
  const host = url.host;
  const messages: Record<string, string> = {
    ECONNREFUSED: `${host} refused the connection`,
    ECONNRESET: `the connection to ${host} was reset`,
    ETIMEDOUT: `the connection to ${host} timed out`,
    ENOTFOUND: `${host} could not be found (DNS)`,
    EAI_AGAIN: `looking up ${host} failed for now (DNS)`,
    EHOSTUNREACH: `${host} is unreachable`,
    ENETUNREACH: `the network is unreachable`,
    EPIPE: `the connection to ${host} broke`,
  };
  const message = messages[code] ?? `the request to ${host} failed: ${e.message ?? String(err)}`;
  return new AppError(code, message, { cause: err, retryable: true });
}
