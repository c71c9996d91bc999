import type { ErrorBody } from '../server/protocol/wire';

/**
 * A failure the user can act on: its message is printed as it is. `refused` (exit code 1): the
 * server said no, or the source it asked failed; the others (exit code 2) mean that the server
 * cannot be used: `unauthorized` (a token is needed), `unreachable` (no answer, or not a Model
 * Downloader's), `failing` (it answered 5xx about itself, or refused this client's host or origin).
 */
export class CliError extends Error {
  readonly exitCode: 1 | 2;
  constructor(
    message: string,
    readonly kind: 'refused' | 'unauthorized' | 'unreachable' | 'failing',
    /** The server's answer, when it gave one: its HTTP status and error code. */
    readonly answer?: { status: number; code: string },
  ) {
    super(message);
    this.name = 'CliError';
    this.exitCode = kind === 'refused' ? 1 : 2;
  }
}

/** A body sent as it is (a workflow file), with its media type. */
export interface RawBody {
  bytes: Uint8Array<ArrayBuffer>;
  type: string;
}

export interface Api {
  /**
   * JSON (or a RawBody) to the server; the parsed JSON answer. Throws a CliError for every error
   * answer except `409` with a `download` (already active): that one is the caller's.
   */
  request<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

export const unauthorized = (server: string): CliError =>
  new CliError(`${server} needs its API token: set API_TOKEN in the environment (the value the server was started with)`, 'unauthorized');

const isRaw = (body: unknown): body is RawBody => typeof body === 'object' && body !== null && (body as RawBody).bytes instanceof Uint8Array && typeof (body as RawBody).type === 'string';

/**
 * Which error answers mean "the server cannot be used" (exit 2) rather than "no to this request"
 * (exit 1). A 502 with the server's own error body is about the source it asked (a download URL's
 * host, the Hugging Face API), so it is a refusal; a 502 from a proxy in front has no such body.
 */
function kindOf(status: number, code: string): CliError['kind'] {
  if (status === 403 && (code === 'FORBIDDEN_HOST' || code === 'FORBIDDEN_ORIGIN')) return 'failing';
  if (status >= 500 && status !== 502) return 'failing';
  return 'refused';
}

/** JSON over HTTP to the server, with `Authorization: Bearer $API_TOKEN` when there is one. */
export function createApi(server: string, token: string | undefined): Api {
  return {
    async request<T>(method: string, path: string, body?: unknown) {
      const raw = isRaw(body) ? body : undefined;
      const contentType = raw ? raw.type : body === undefined ? undefined : 'application/json';
      let res: Response;
      try {
        res = await fetch(new URL(path, server), {
          method,
          headers: { accept: 'application/json', ...(contentType ? { 'content-type': contentType } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
          ...(raw ? { body: raw.bytes } : body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new CliError(`Cannot reach ${server}: ${cause?.code ?? cause?.message ?? (err as Error).message}. Is the server running (npm start)? Give its address with --server.`, 'unreachable');
      }
      if (res.status === 401) throw unauthorized(server);
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        const hint = res.status >= 500 ? 'a proxy in front of it may not reach it' : 'is --server the Model Downloader?';
        throw new CliError(`${server} answered ${res.status} with something that is not JSON; ${hint}`, 'unreachable');
      }
      if (res.status < 400) return { status: res.status, body: parsed as T };
      const error = (parsed as Partial<ErrorBody> | undefined)?.error;
      if (!error?.message) throw new CliError(`${server} answered ${res.status} without saying why; is --server the Model Downloader?`, 'unreachable');
      // 409 "already active" comes with the download: keep it for the caller.
      if (res.status === 409 && (parsed as { download?: unknown }).download) return { status: res.status, body: parsed as T };
      const kind = kindOf(res.status, error.code);
      throw new CliError(`${error.message} (${error.code}${kind === 'failing' ? `, HTTP ${res.status}` : ''})`, kind, { status: res.status, code: error.code });
    },
  };
}
