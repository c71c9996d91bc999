import type { ErrorCode, HttpErrorCode, RegisteredErrorCode } from './protocol/error-codes';

/**
 * One error base with a stable `code` (like got's RequestError and ws's WS_ERR_* codes).
 * HTTP-facing errors carry `status`; the error middleware turns them into `{error:{code,message}}`.
 * The codes and their meanings are listed in protocol/error-codes.ts.
 */
export class AppError<C extends string = ErrorCode> extends Error {
  readonly code: ErrorCode;
  /** HTTP status when this error answers a request. */
  readonly status: number;
  /** Whether a download that failed with it may be retried automatically. */
  readonly retryable: boolean;
  /** Seconds the server asked us to wait (Retry-After), when it did. */
  readonly retryAfter?: number;

  /**
   * A code written in the source (a literal) must be registered; one only known at runtime (the
   * system's code of a network or disk failure, a code carried over from another AppError) passes.
   */
  constructor(
    code: C & Checked<C>,
    message: string,
    options: { status?: number; cause?: unknown; retryable?: boolean; retryAfter?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = options.status ?? 500;
    this.retryable = options.retryable ?? false;
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter;
  }

  /** What a client sees (API, WebSocket, an entry's `error`): never a path of the server's disk. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: withoutPaths(this.message) };
  }
}

/** `C` when it may be a code (see the constructor), else a type whose name says what to do. */
type Checked<C extends string> = string extends C
  ? C
  : C extends RegisteredErrorCode | HttpErrorCode
    ? C
    : { 'add the code to ERROR_CODES in server/protocol/error-codes.ts': C };

export const badRequest = (code: RegisteredErrorCode, message: string): AppError => new AppError(code, message, { status: 400 });
export const notFound = (code: RegisteredErrorCode, message: string): AppError => new AppError(code, message, { status: 404 });
export const conflict = (code: RegisteredErrorCode, message: string): AppError => new AppError(code, message, { status: 409 });

/**
 * A message without absolute paths: each is cut to its last segment (`open '/srv/models/loras/x.part'`
 * → `open 'x.part'`). The server's folders are nobody's business, and Node's system errors name
 * them. A URL's path is left alone (a `/` after `:`, `/`, a word character or a dot is not a path's start).
 */
export function withoutPaths(message: string): string {
  return message.replace(/(?<![\w:/.~-])(?:[A-Za-z]:)?[\\/](?:[^\s'"`\\/]+[\\/])+([^\s'"`\\/]*)/g, '$1');
}

/** The system errno of an error or its causes (`ECONNRESET`, `ENOSPC`), if any. */
export function errnoOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9_]+$/.test(code)) return code;
  }
  return undefined;
}
