import type { ErrorBody } from '../server/protocol/wire';

/**
 * A failure the user can act on: its message is printed as it is. `refused` (exit code 1): the
 * server said no; `unauthorized` and `unreachable` (exit code 2): the server cannot be used.
 */
export class CliError extends Error {
  readonly exitCode: 1 | 2;
  constructor(
    message: string,
    readonly kind: 'refused' | 'unauthorized' | 'unreachable',
  ) {
    super(message);
    this.name = 'CliError';
    this.exitCode = kind === 'refused' ? 1 : 2;
  }
}

export interface Api {
  request<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

export const unauthorized = (server: string): CliError =>
  new CliError(`${server} needs its API token: set API_TOKEN in the environment (the value the server was started with)`, 'unauthorized');

/** JSON over HTTP to the server, with `Authorization: Bearer $API_TOKEN` when there is one. */
export function createApi(server: string, token: string | undefined): Api {
  return {
    async request<T>(method: string, path: string, body?: unknown) {
      let res: Response;
      try {
        res = await fetch(new URL(path, server), {
          method,
          headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
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
        throw new CliError(`${server} answered ${res.status} with something that is not JSON; is --server the Model Downloader?`, 'unreachable');
      }
      const error = (parsed as Partial<ErrorBody> | undefined)?.error;
      if (res.status >= 400 && error?.message) {
        // 409 "already active" comes with the download: keep it for the caller.
        if (res.status === 409) return { status: res.status, body: parsed as T };
        throw new CliError(`${error.message} (${error.code})`, 'refused');
      }
      return { status: res.status, body: parsed as T };
    },
  };
}
