/**
 * The client for the model hosts' JSON metadata APIs (Hugging Face's tree and revision
 * endpoints, Civitai's model and version endpoints), on axios. The byte path keeps its own
 * HTTP/1.1 client (server/net); this one only ever reads small JSON answers.
 *
 * What it guarantees, hop by hop:
 * - http(s) only, no link-local or cloud-metadata address: `checkAddressLiteral` on every URL
 *   (the first and each redirect's), and `guardedLookup` on the agents for names that resolve there;
 * - redirects followed by hand (axios's `maxRedirects: 0`), so that credentials are asked for again
 *   at every hop: `headersFor(url)` gives a host's token to that host only, and a redirect to any
 *   other host (or scheme, or port) goes without it;
 * - the proxies of HTTPS_PROXY, HTTP_PROXY and NO_PROXY, per hop as for downloads (proxy-hops.ts):
 *   through a proxy the target's name is resolved by the proxy, as for downloads, and the literal
 *   check still refuses a forbidden address on every hop; the proxy's credentials go to it only;
 * - a time limit to the first answer (connecting included) and one for the whole request;
 * - at most `maxBytes` of body (after decompression), JSON only;
 * - every failure an AppError that says what happened (`HTTP_<status>`, `TIMEOUT`,
 *   `RESPONSE_TOO_LARGE`, `NOT_JSON`, `FORBIDDEN_ADDRESS`, an errno…).
 */
import http from 'node:http';
import https from 'node:https';
import axios, { AxiosError, type AxiosResponse } from 'axios';
import type { ProxyConfig } from '../../config';
import { AppError } from '../../errors';
import type { TlsOptions } from '../../net/dial';
import { checkAddressLiteral, guardedLookup, redactUrl } from '../../net/url-policy';
import { createProxyHops, proxyFailure, proxyRefusal, type ProxyHop } from './proxy-hops';

/** Largest JSON answer read: a 10,000-file repository's tree page is well under 2 MiB. */
export const MAX_JSON_BYTES = 16 * 1024 * 1024;

/** Agents for the two schemes. Keep-alive: a listing is many pages from one host. */
export interface Agents {
  http?: http.Agent;
  https?: https.Agent;
}

/** Errors of a kept-alive connection that the host had closed: nothing was answered, a GET may be asked again. */
const STALE_SOCKET = new Set(['ECONNRESET', 'EPIPE', 'ERR_SOCKET_CONNECTION_TIMEOUT']);

/** The default agents: every connection's DNS answer goes through the address guard. */
export const guardedAgents: Readonly<Required<Agents>> = Object.freeze({
  http: new http.Agent({ keepAlive: true, lookup: guardedLookup }),
  https: new https.Agent({ keepAlive: true, lookup: guardedLookup }),
});

/** An HTTP error answer, for a source to word. */
export interface ApiErrorInfo {
  status: number;
  /** The URL that answered (after redirects). */
  url: URL;
  /** Lower-case header names. */
  headers: Record<string, string>;
  /** The `error`/`message` of a JSON error body, or the start of a text one (one line, ≤ 300 chars). */
  said?: string;
}

/** What a source says of an HTTP error: its own code and words, or just the words. */
export type DescribeError = (info: ApiErrorInfo) => { code?: string; message: string } | string | undefined;

/** How the client reaches the hosts: what a source passes through to it as it is. */
export interface ReachOptions {
  /**
   * Agents for the hops that go direct, instead of `guardedAgents`. Whoever passes one makes its
   * connections safe; `checkAddressLiteral` still refuses a forbidden address literal on every hop.
   */
  agent?: Agents;
  /** HTTPS_PROXY, HTTP_PROXY and NO_PROXY (config.ts's `proxy`), applied at every hop. @default none */
  proxy?: ProxyConfig;
  /** TLS options for https hops through a proxy's tunnel (a test's CA); a direct hop has `agent.https`'s. */
  tls?: TlsOptions;
  /** Longest wait for the answer's headers, connecting included, and for each read after. @default 15000 */
  connectTimeoutMs?: number;
  /** Longest time for one request, redirects and body included. @default 60000 */
  timeoutMs?: number;
}

/** The reach options of a source's options, only those given. */
export function reachOf(o: ReachOptions): ReachOptions {
  return Object.fromEntries((['agent', 'proxy', 'tls', 'connectTimeoutMs', 'timeoutMs'] as const).filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}

export interface ApiClientOptions extends ReachOptions {
  /** Who answers, for messages: `Hugging Face`, `Civitai`. */
  label: string;
  /** Extra headers for one hop, asked at every hop: a host's credentials for that host only. */
  headersFor?: (url: URL) => Record<string, string>;
  /** Words for HTTP error statuses, where the source knows better than `<label> answered <status>`. */
  describeError?: DescribeError;
  /** Largest body read, after decompression. @default MAX_JSON_BYTES */
  maxBytes?: number;
  /** @default 5 */
  maxRedirects?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Words for this request's errors (it knows the repository or model), tried before the client's. */
  describeError?: DescribeError;
}

export interface JsonResponse<T> {
  data: T;
  status: number;
  /** The URL that answered, after redirects. */
  url: URL;
  /** Lower-case header names. */
  headers: Record<string, string>;
}

export interface ApiClient {
  /** GET a JSON document; a 2xx answer's body parsed, anything else thrown as an AppError. */
  getJson<T = unknown>(url: URL, options?: RequestOptions): Promise<JsonResponse<T>>;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** `15 s`, `0.2 s`. */
const seconds = (ms: number): string => `${ms >= 1000 ? Math.round(ms / 1000) : Math.round(ms / 100) / 10} s`;

const isRetryable = (status: number): boolean => status === 408 || status === 429 || status >= 500;

/** Seconds of a `Retry-After` header (seconds or an HTTP date), if it makes sense. */
function retryAfterOf(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const s = value.trim();
  if (/^\d+$/.test(s)) return Math.min(Number(s), 24 * 3600);
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.min(Math.ceil((at - Date.now()) / 1000), 24 * 3600));
}

function flatHeaders(res: AxiosResponse): Record<string, string> {
  const out: Record<string, string> = {};
  const raw = (res.headers as { toJSON?: () => Record<string, unknown> }).toJSON?.() ?? (res.headers as Record<string, unknown>);
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined || v === null) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return out;
}

const isJsonType = (type: string | undefined): boolean => !!type && /^application\/(?:[\w.+-]*\+)?json\b/i.test(type.trim());

/** One line of what an error body said: its JSON `error`/`message`, or the start of its text. */
function saidIn(body: Buffer, type: string | undefined): string | undefined {
  const text = body.subarray(0, 64 * 1024).toString('utf8');
  if (isJsonType(type) || /^\s*[{[]/.test(text)) {
    try {
      const j = JSON.parse(text) as unknown;
      if (j && typeof j === 'object') {
        const o = j as Record<string, unknown>;
        const said = [o.error, o.message].find((v) => typeof v === 'string' && v.trim() !== '') as string | undefined;
        if (said) return oneLine(said);
      }
    } catch {
      // Not JSON after all: fall through to the text.
    }
  }
  if (/^\s*</.test(text) || /html/i.test(type ?? '')) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1];
    return title ? oneLine(`a web page: ${title}`) : 'a web page';
  }
  return text.trim() ? oneLine(text) : undefined;
}

const oneLine = (s: string): string => {
  // Control characters out (an error body is another server's text), one line, at most 300 characters.
  const flat = s.replace(/[\p{Cc}\p{Cf}\u2028\u2029]+/gu, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > 300 ? `${flat.slice(0, 299)}…` : flat;
};

const NETWORK_WORDS: Record<string, (host: string) => string> = {
  ECONNREFUSED: (h) => `${h} refused the connection`,
  ECONNRESET: (h) => `the connection to ${h} was reset`,
  ETIMEDOUT: (h) => `the connection to ${h} timed out`,
  ENOTFOUND: (h) => `${h} could not be found (DNS)`,
  EAI_AGAIN: (h) => `looking up ${h} failed for now (DNS)`,
  EHOSTUNREACH: (h) => `${h} is unreachable`,
  ENETUNREACH: () => 'the network is unreachable',
  EPIPE: (h) => `the connection to ${h} broke`,
};

/** An axios error as a plain one (its message, errno and cause), without the request config it carries. */
function withoutConfig(err: unknown): Error {
  if (!axios.isAxiosError(err)) return err instanceof Error ? err : new Error(String(err));
  const plain = new Error(err.message, err.cause === undefined ? undefined : { cause: err.cause });
  return Object.assign(plain, err.code === undefined ? {} : { code: err.code });
}

/** The AppError in an error's cause chain (our own refusal, e.g. the DNS guard's), if any. */
function appErrorIn(err: unknown): AppError | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof AppError) return e;
  }
  return undefined;
}

function errnoIn(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9_]+$/.test(code) && code !== 'ECONNABORTED') return code;
  }
  return undefined;
}

export function createApiClient(options: ApiClientOptions): ApiClient {
  const label = options.label;
  const connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const maxBytes = options.maxBytes ?? MAX_JSON_BYTES;
  const maxRedirects = options.maxRedirects ?? 5;
  const agents = { http: options.agent?.http ?? guardedAgents.http, https: options.agent?.https ?? guardedAgents.https };
  const instance = axios.create({
    maxRedirects: 0,
    proxy: false,
    httpAgent: agents.http,
    httpsAgent: agents.https,
    responseType: 'arraybuffer',
    transformResponse: [],
    validateStatus: () => true,
    maxContentLength: maxBytes,
    decompress: true,
    timeout: connectTimeoutMs,
    transitional: { clarifyTimeoutError: true, silentJSONParsing: false, forcedJSONParsing: false },
  });

  const checkHop = (url: URL): void => {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new AppError('UNSUPPORTED_URL', `Only http and https URLs are fetched, got ${url.protocol.replace(/:$/, '')}`, { status: 400 });
    }
    if (url.username || url.password) {
      throw new AppError('URL_CREDENTIALS', `${url.host}: a URL with a user name or password is not fetched`, { status: 400 });
    }
    checkAddressLiteral(url.hostname);
  };

  const statusError = (info: ApiErrorInfo, describe: DescribeError | undefined): AppError => {
    const worded = describe?.(info) ?? options.describeError?.(info);
    const fallback = `${label} answered ${info.status}${info.said ? `: ${info.said}` : ''}`;
    const { code, message } = typeof worded === 'string' ? { code: undefined, message: worded } : (worded ?? { code: undefined, message: fallback });
    const retryable = isRetryable(info.status);
    const retryAfter = retryAfterOf(info.headers['retry-after']);
    // As intake words a probe's failure: a refusal is the request's fault (400), an unwell host a 502.
    return new AppError(code ?? `HTTP_${info.status}`, message, {
      status: retryable ? 502 : 400,
      retryable,
      ...(retryAfter === undefined ? {} : { retryAfter }),
    });
  };

  const proxyHop = createProxyHops({ proxy: options.proxy, tls: options.tls, limitMs: connectTimeoutMs });

  const transportError = (err: unknown, url: URL, deadline: AbortSignal, caller: AbortSignal | undefined, hop: ProxyHop | undefined): AppError => {
    const ours = appErrorIn(err);
    // axios's error carries the request's config, its headers (tokens, Proxy-Authorization) with
    // it: never kept as a cause, where a log of the error would print them.
    const cause = withoutConfig(err);
    const errno = errnoIn(err);
    const proxied = proxyFailure(hop, url, label, ours, errno, cause);
    if (proxied) return proxied;
    if (ours) return ours;
    const host = url.host;
    if (deadline.aborted && !caller?.aborted) {
      return new AppError('TIMEOUT', `${label} (${host}) did not finish answering within ${seconds(timeoutMs)}`, { status: 502, retryable: true, cause });
    }
    if (caller?.aborted || axios.isCancel(err)) return new AppError('ABORTED', `The request to ${label} was aborted`, { cause });
    const e = err as AxiosError;
    if (e.code === AxiosError.ETIMEDOUT || e.code === AxiosError.ECONNABORTED) {
      return new AppError('TIMEOUT', `${label} (${host}) did not answer within ${seconds(connectTimeoutMs)}`, { status: 502, retryable: true, cause });
    }
    if (/maxContentLength/.test(e.message ?? '')) {
      return new AppError('RESPONSE_TOO_LARGE', `${label} (${host}) sent more than ${maxBytes} bytes for one metadata answer; not read`, { status: 502, cause });
    }
    const words = errno ? NETWORK_WORDS[errno] : undefined;
    return new AppError(errno ?? 'NETWORK', `Could not reach ${label}: ${words ? words(host) : `the request to ${host} failed (${e.message ?? String(err)})`}`, {
      status: 502,
      retryable: true,
      cause,
    });
  };

  return {
    async getJson<T>(start: URL, request: RequestOptions = {}): Promise<JsonResponse<T>> {
      const deadline = AbortSignal.timeout(timeoutMs);
      const signal = request.signal ? AbortSignal.any([request.signal, deadline]) : deadline;
      const seen = new Set<string>([start.toString()]);
      let url = start;
      for (let hop = 0; ; hop++) {
        checkHop(url);
        const via = proxyHop(url);
        let res: AxiosResponse<Buffer>;
        const get = (): Promise<AxiosResponse<Buffer>> =>
          instance.get<Buffer>(url.toString(), {
            ...via?.config,
            signal,
            headers: { Accept: 'application/json', 'User-Agent': 'model-downloader/0.1', ...(options.headersFor?.(url) ?? {}), ...via?.headers },
          });
        try {
          res = await get().catch((err: unknown) => {
            // A kept-alive connection the host closed while it sat idle (its keep-alive timeout)
            // fails at once, before any answer: a GET is asked again once, on a new connection.
            if (signal.aborted || (err as AxiosError).response || !STALE_SOCKET.has(String((err as AxiosError).code))) throw err;
            return get();
          });
        } catch (err) {
          throw transportError(err, url, deadline, request.signal, via);
        }
        const refused = proxyRefusal(via, url, label, res.status);
        if (refused) throw refused;
        const headers = flatHeaders(res);
        if (REDIRECTS.has(res.status) && headers.location) {
          if (hop >= maxRedirects) {
            throw new AppError('TOO_MANY_REDIRECTS', `${label} redirected more than ${maxRedirects} times, starting at ${redactUrl(start)}`, { status: 502 });
          }
          let next: URL;
          try {
            next = new URL(headers.location, url);
          } catch {
            throw new AppError('BAD_REDIRECT', `${label} (${url.host}) redirected to an invalid location`, { status: 502 });
          }
          if (next.protocol !== 'http:' && next.protocol !== 'https:') {
            throw new AppError('BAD_REDIRECT', `${label} (${url.host}) redirected to a ${next.protocol.replace(/:$/, '')} URL, which is not fetched`, { status: 502 });
          }
          next.hash = '';
          if (seen.has(next.toString())) {
            throw new AppError('REDIRECT_LOOP', `${label} redirects in a loop (back to ${redactUrl(next)})`, { status: 502 });
          }
          seen.add(next.toString());
          url = next;
          continue;
        }
        const body = Buffer.isBuffer(res.data) ? res.data : Buffer.from(res.data ?? []);
        const type = headers['content-type'];
        if (res.status < 200 || res.status > 299) {
          const said = saidIn(body, type);
          throw statusError({ status: res.status, url, headers, ...(said ? { said } : {}) }, request.describeError);
        }
        const text = body.toString('utf8');
        if (!isJsonType(type) && (/html/i.test(type ?? '') || /^\s*</.test(text))) {
          const said = saidIn(body, 'text/html');
          throw new AppError('NOT_JSON', `${label} (${url.host}) answered with ${said ?? 'a web page'} instead of JSON: is the endpoint right?`, { status: 502 });
        }
        let data: T;
        try {
          data = JSON.parse(text) as T;
        } catch {
          throw new AppError('NOT_JSON', `${label} (${url.host}) answered ${res.status} with something that is not JSON${type ? ` (${oneLine(type)})` : ''}`, { status: 502 });
        }
        return { data, status: res.status, url, headers };
      }
    },
  };
}

/**
 * The `rel="next"` target of a `Link` header (RFC 8288), resolved against the URL that sent it:
 * how the Hub pages its tree listings.
 */
export function nextLink(header: string | undefined, base: URL): URL | undefined {
  if (!header) return undefined;
  for (const m of header.matchAll(/<([^>]*)>((?:\s*;\s*[^;,]+)*)/g)) {
    const params = m[2] ?? '';
    const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(params);
    const rels = (rel?.[1] ?? rel?.[2] ?? '').toLowerCase().split(/\s+/);
    if (!rels.includes('next')) continue;
    try {
      return new URL(m[1]!, base);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
