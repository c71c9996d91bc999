/**
 * HTTP calls to the server from the page: JSON in and out, the API token as
 * `Authorization: Bearer`, and every failure as an `ApiError` carrying the server's
 * `{error:{code,message}}` (or a network/HTTP description when there is none).
 */
import type { Entry, ErrorBody, StatusView } from '../server/protocol/wire.js';
import type { ProbeResult } from './ws-client.js';

const TOKEN_KEY = 'model-downloader.token';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The whole answer body, e.g. `{error, download}` for a 409. */
  readonly body: unknown;
  constructor(status: number, code: string, message: string, body?: unknown) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** The API token, kept in localStorage so it is asked once per browser. */
export const tokenStore = {
  get(): string | null {
    try {
      return localStorage.getItem(TOKEN_KEY);
    } catch {
      return null; // storage disabled: the token lives only as long as the page
    }
  },
  set(token: string | null): void {
    try {
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch {
      // see get()
    }
  },
};

export interface ApiOptions {
  /** The current token, read at each call. */
  token: () => string | null;
  /** Called when the server answers 401, so the page can ask for the token. */
  onUnauthorized: () => void;
}

export interface Api {
  /** Resolves with the status and parsed body of a 2xx answer; rejects with an ApiError otherwise. */
  request<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** The same with a body sent as it is (a file's bytes), of the given media type. */
  send<T>(method: string, path: string, body: Blob | string, contentType: string): Promise<{ status: number; body: T }>;
  /** `GET /status` as the WebSocket client's probe: the entries, or why there are none. */
  probe(): Promise<ProbeResult>;
}

function isErrorBody(body: unknown): body is ErrorBody {
  const e = (body as ErrorBody | null)?.error;
  return typeof e === 'object' && e !== null && typeof e.message === 'string' && typeof e.code === 'string';
}

export function createApi(options: ApiOptions): Api {
  const send = async <T>(method: string, path: string, body?: Blob | string, contentType?: string): Promise<{ status: number; body: T }> => {
    const headers: Record<string, string> = { Accept: 'application/json' };
    const token = options.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined && contentType) headers['Content-Type'] = contentType;
    let res: Response;
    try {
      res = await fetch(path, { method, headers, ...(body !== undefined ? { body } : {}), cache: 'no-store' });
    } catch (err) {
      throw new ApiError(0, 'NETWORK', `Cannot reach the server (${(err as Error).message}); is it running?`);
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      // not JSON (a proxy's error page): keep the text for the message below
    }
    if (res.status === 401) options.onUnauthorized();
    if (!res.ok) {
      if (isErrorBody(parsed)) throw new ApiError(res.status, parsed.error.code, parsed.error.message, parsed);
      const snippet = typeof parsed === 'string' ? parsed.trim().slice(0, 200) : '';
      throw new ApiError(res.status, `HTTP_${res.status}`, `The server answered ${res.status} ${res.statusText}${snippet ? `: ${snippet}` : ''}`, parsed);
    }
    return { status: res.status, body: parsed as T };
  };
  const request = <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> =>
    body === undefined ? send<T>(method, path) : send<T>(method, path, JSON.stringify(body), 'application/json');

  return {
    request,
    send,
    async probe() {
      try {
        const { body } = await request<Record<string, StatusView>>('GET', '/status');
        return { ok: true, downloads: Object.values(body ?? {}) as Entry[] };
      } catch (err) {
        return { ok: false, unauthorized: err instanceof ApiError && err.status === 401 };
      }
    },
  };
}
