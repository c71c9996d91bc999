/**
 * The registry of error codes: every `code` the server puts in an `{error:{code,message}}` answer,
 * a WebSocket `error` message or a download's `error`, with what it means. Codes are stable (bots
 * and the page branch on them); the messages are for people and may change.
 * Pure TypeScript with no imports (the page's build compiles protocol/ too).
 */

export const ERROR_CODES = {
  // ---- Requests refused (400, 404, 409, 413, 415, 503) ---------------------------------------
  INVALID_BODY: 'The body (or a field of it) is not what the route expects',
  INVALID_JSON: 'The body or WebSocket message is not valid JSON',
  INVALID_MESSAGE: 'A WebSocket message that is not a JSON object (binary, an array)',
  UNKNOWN_COMMAND: 'A WebSocket message of an unknown `type`',
  UNSUPPORTED_MEDIA_TYPE: 'A body that is neither JSON nor a form',
  BODY_TOO_LARGE: 'A body over the size limit',
  INVALID_URL: '`url` is missing or not a URL',
  URL_TOO_LONG: '`url` is longer than the limit',
  UNSUPPORTED_URL: 'A URL (given, or a redirect hop) that is not http or https',
  URL_CREDENTIALS: 'A URL that carries a user name, password, token or signature',
  FORBIDDEN_ADDRESS: 'A host that is a link-local or cloud-metadata address, never fetched',
  INVALID_SHA256: '`sha256` is not 64 hexadecimal digits',
  INVALID_FILENAME: '`filename` is not a non-empty string',
  FILENAME_REQUIRED: 'Neither the URL nor its server names the file: give `filename`',
  INVALID_FOLDER: '`folder` is not a non-empty string',
  UNKNOWN_FOLDER: '`folder` is neither a ComfyUI model folder nor one under the models folder',
  INVALID_PATH: 'A folder or filename that would leave the models folder or is not a safe name',
  INSUFFICIENT_SPACE: 'The file is larger than the free space of the models folder (507)',
  RESERVED_PATH: 'A destination that is one of the server\'s own files (status file, catalog, their lock or temp files)',
  CIVITAI_VERSION_REQUIRED: 'A Civitai model page URL that does not say which version to fetch',
  PROBE_TIMEOUT: 'The server did not answer in time when asked for the file name',
  NOT_FOUND: 'No such download, catalog entry or route',
  ALREADY_ACTIVE: 'A download to that destination is already under way or paused',
  ACTIVE_ELSEWHERE: 'Fleet mode: another server of the fleet is downloading that destination (or has it paused)',
  INSTANCE_STALE: 'Fleet mode: a command for a download of a server that has not been heard from for FLEET_STALE_SECONDS',
  DEST_IS_DIRECTORY: 'The destination is a folder (on add, or when the finished file is renamed into place)',
  INVALID_STATE: 'The command does not fit the download\'s status (see protocol/status.ts COMMANDS)',
  ACTIVE: 'Remove of a download that is not finished: cancel it first',
  SHUTTING_DOWN: 'The server is shutting down (503)',
  METHOD_NOT_ALLOWED: 'The route exists but not with that method (405)',
  NOT_IMPLEMENTED: 'An HTTP method the server does not handle (501)',
  // ---- Workflows ------------------------------------------------------------------------------
  NOT_A_WORKFLOW: 'A body that is not a ComfyUI workflow (UI or API format)',
  NOT_A_PNG: 'A body sent as image/png that is not a PNG',
  INVALID_PNG: 'A PNG whose chunks are cut short or fail their CRC',
  NO_WORKFLOW_IN_PNG: 'A PNG with no workflow in its text chunks (saved with --disable-metadata?)',
  PNG_TEXT_TOO_LARGE: 'A PNG text chunk that inflates past the limit',
  EXTRA_MODEL_PATHS_MISSING: 'EXTRA_MODEL_PATHS names a file that does not exist',
  EXTRA_MODEL_PATHS_UNREADABLE: 'extra_model_paths.yaml cannot be read',
  EXTRA_MODEL_PATHS_INVALID: 'extra_model_paths.yaml cannot be read or is not valid YAML',
  MODEL_LIST_INVALID: 'MODEL_LIST_FILE cannot be read or is not a model-list.json',
  // ---- Source metadata (Hugging Face and Civitai APIs) ----------------------------------------
  HF_BAD_ANSWER: 'The Hugging Face API answered something that is not a file listing or revision',
  HF_NO_FILES: 'A Hugging Face repo or folder (after include/exclude) with no files',
  HF_TOO_MANY_FILES: 'A Hugging Face repo or folder with more files than one request may start',
  CIVITAI_BAD_ANSWER: 'The Civitai API answered something that is not a model or version',
  CIVITAI_FILE_NOT_FOUND: 'A Civitai version with no file of the type or format asked for',
  INVALID_HASH: 'A hash that is not 64 hexadecimal digits',
  NOT_JSON: 'A metadata API answered something other than JSON',
  RESPONSE_TOO_LARGE: 'A metadata API answer larger than the limit',
  TIMEOUT: 'A metadata API did not answer in time',
  // ---- Security (401, 403) --------------------------------------------------------------------
  UNAUTHORIZED: 'API_TOKEN is set and the request did not carry it',
  FORBIDDEN_HOST: 'A Host header other than the server\'s own names (DNS rebinding)',
  FORBIDDEN_ORIGIN: 'A cross-site request from an origin not in ALLOWED_ORIGINS',
  // ---- Catalog --------------------------------------------------------------------------------
  INVALID_ID: 'A catalog set or model id that is not a safe identifier',
  INVALID_NAME: 'A catalog model name that is empty or too long',
  INVALID_DESCRIPTION: 'A catalog model description that is not a string or too long',
  MODEL_EXISTS: 'A catalog set already has a model with that id',
  CATALOG_UNREADABLE: 'The catalog file cannot be read',
  CATALOG_INVALID: 'The catalog file is not a usable catalog',
  // ---- Server ---------------------------------------------------------------------------------
  INTERNAL: 'A bug or unexpected fault; the server log has the details (500)',
  LOCKED: 'Another server is using the same status file (or, in fleet mode, the same INSTANCE_NAME)',
  FLEET_UNAVAILABLE: 'Fleet mode: FLEET_DIR cannot be used (missing, read-only, unreachable) for a lock or a command (503)',
  // ---- A download's failure (its entry's `error`) ---------------------------------------------
  ERROR: 'An unexpected failure of a download (also a bare message stored by the seed)',
  STALE: 'An active download with no progress and no transfer running for STALE_MINUTES',
  LOCK_LOST: 'Fleet mode: this server lost its lock on the destination (stopped or cut off too long); waiting for it',
  STALLED: 'No byte arrived for the stall timeout; retried',
  INCOMPLETE: 'The connection closed before the whole file arrived; retried',
  SIZE_MISMATCH: 'The file is not the size its server or source announced',
  SHA256_MISMATCH: 'The file\'s sha256 is not the expected one; the file was discarded',
  GIT_OID_MISMATCH: 'The file\'s git blob id is not the one Hugging Face lists; the file was discarded',
  BAD_RANGE: 'The server answered another byte range than asked for; retried',
  RANGE_NOT_SATISFIABLE: 'The server could not serve the rest of the file (416); started over',
  CHANGED_UPSTREAM: 'The file changed on its server while segments were fetched; started over',
  NOT_A_FILE: 'The server answered with a web page or JSON instead of the file',
  ABORTED: 'A transfer aborted by the server itself (pause, cancel, shutdown); never shown for long',
  TOO_MANY_REDIRECTS: 'More redirects than allowed',
  BAD_REDIRECT: 'A redirect to an invalid or non-http(s) location',
  REDIRECT_LOOP: 'Redirects that come back to a URL already visited',
  BAD_RESPONSE: 'The server\'s answer is not valid HTTP; retried',
  CONNECT_TIMEOUT: 'The file\'s server (or the proxy) did not accept the connection in time; retried',
  TLS_TIMEOUT: 'The TLS handshake did not finish in time; retried',
  HEAD_TIMEOUT: 'The server accepted the connection but sent no answer in time; retried',
  BODY_TIMEOUT: 'The server stopped sending in the middle of the body; retried',
  SELF_ADDRESS: 'A URL (or a redirect) that leads to this server itself: never fetched',
  PROXY_REFUSED: 'The proxy refused the connection (CONNECT refused, or 407: its credentials)',
  PROXY_UNREACHABLE: 'The proxy could not be reached, or answered something that is not HTTP',
  BAD_HEADER: 'A request header (from a source or token) that HTTP does not allow',
  NETWORK: 'A network failure without a system code; retried',
  // Network failures keep the system's code (retried):
  ECONNREFUSED: 'The server refused the connection',
  ECONNRESET: 'The connection was reset (or closed early)',
  ETIMEDOUT: 'The connection timed out',
  ENOTFOUND: 'The host name does not resolve (DNS)',
  EAI_AGAIN: 'DNS lookup failed for now',
  EHOSTUNREACH: 'The host is unreachable',
  ENETUNREACH: 'The network is unreachable',
  EPIPE: 'The connection broke while sending',
  // Disk failures keep the system's code (not retried: they need a person):
  ENOSPC: 'Disk full; the bytes downloaded so far, if any, are kept',
  EDQUOT: 'Disk quota exceeded; the bytes downloaded so far, if any, are kept',
  EROFS: 'The folder is on a read-only disk',
  EACCES: 'Permission denied on the folder',
  EPERM: 'Operation not permitted on the folder',
  EISDIR: 'A folder has the file\'s name',
  ENOTDIR: 'A file is where a folder of the path should be',
  ENOENT: 'A folder of the path is missing and could not be created',
  EIO: 'The disk reported an I/O error (or accepted no bytes)',
  EFBIG: 'The file is larger than the disk or file system allows',
  EXDEV: '`link`: the file with the same sha256 is on another file system; a hard link cannot cross it (409)',
  EMLINK: '`link`: the file with the same sha256 has as many hard links as its file system allows (409)',
  EEXIST: '`link`: something is already at the destination (a file made meanwhile, a link to nothing) (409)',
} as const satisfies Record<string, string>;

export type RegisteredErrorCode = keyof typeof ERROR_CODES;

/** An HTTP failure status of the file's server (`HTTP_404`), or of the API itself for a non-AppError. */
export type HttpErrorCode = `HTTP_${number}`;

/**
 * Any other code the system gave a network or disk failure (`EMFILE`, `CERT_HAS_EXPIRED`,
 * `ERR_SSL_WRONG_VERSION_NUMBER`…), passed through as it is: the set is Node's and the OS's, not
 * ours. `string & {}` admits them while editors still offer the registered codes.
 */
export type SystemErrorCode = string & {};

export type ErrorCode = RegisteredErrorCode | HttpErrorCode | SystemErrorCode;

export const isRegisteredErrorCode = (code: string): code is RegisteredErrorCode => Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
