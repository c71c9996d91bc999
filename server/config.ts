import os from 'node:os';
import path from 'node:path';

/** Options of the service, read from the environment (docs/reference.md, "Configuration"). */
export interface Config {
  /** @default 8866 (0 = any free port) */
  port: number;
  /** @default '127.0.0.1' */
  host: string;
  /** Absolute root of the ComfyUI models tree. @default './models' */
  modelsDir: string;
  /** @default './.download_status.json' */
  statusFile: string;
  /** @default './model_configs.json' */
  catalogFile: string;
  /** Downloads transferring at once. @default 3 */
  maxConcurrent: number;
  /** HTTP connections one download may use. @default 4 */
  connections: number;
  /** When set, every API call and WebSocket needs it. */
  apiToken?: string;
  /** Extra browser origins allowed besides the server's own. */
  allowedOrigins: readonly string[];
  hfToken?: string;
  civitaiToken?: string;
  /** @default 'https://huggingface.co' */
  hfEndpoint: string;
  /** @default 'https://civitai.com' */
  civitaiEndpoint: string;
  /** Finished entries older than this are dropped. @default 24 */
  retentionHours: number;
  /** An active entry with no progress for this long is marked `error` (`STALE`). @default 10 */
  staleMinutes: number;
  /**
   * ComfyUI's extra_model_paths.yaml (`EXTRA_MODEL_PATHS`): more folders where a model counts as
   * installed. @default `extra_model_paths.yaml` in MODELS_DIR's parent folder, when present
   */
  extraModelPaths?: string;
  /** A ComfyUI-Manager model-list.json (`MODEL_LIST_FILE`): one more place to find a model's URL. */
  modelListFile?: string;
  /** Proxies for downloads, from HTTPS_PROXY, HTTP_PROXY and NO_PROXY (lower-case names win, as in curl). */
  proxy: ProxyConfig;
  /** Fleet mode, on when `FLEET_DIR` is set: servers sharing one volume (server/fleet/). */
  fleet?: FleetConfig;
}

/** A proxy server: where it is, and the credentials its URL carried. */
export interface ProxyServer {
  readonly host: string;
  readonly port: number;
  /** `host:port`: what messages and logs name it by, never with its credentials. */
  readonly display: string;
  /** `Basic <base64>` for Proxy-Authorization when the URL had a user; not enumerable, so never printed or serialized. */
  readonly authorization?: string;
}

/** Which proxy a download goes through (server/net/proxy.ts applies it). Frozen. */
export interface ProxyConfig {
  /** For http:// URLs: requests in absolute form. */
  readonly http?: ProxyServer;
  /** For https:// URLs: a CONNECT tunnel. */
  readonly https?: ProxyServer;
  /** Hosts reached directly: names (and their subdomains), IP addresses or CIDR ranges, `host:port`, or `*` for all. */
  readonly noProxy: readonly string[];
}

/** Fleet mode's options (docs/reference.md, "Fleet mode"). */
export interface FleetConfig {
  /** `FLEET_DIR`: a folder on the volume the servers share (absolute). */
  dir: string;
  /** `INSTANCE_NAME`: this server's name in the fleet, [A-Za-z0-9._-]{1,64}. @default the host name */
  instance: string;
  /** `FLEET_STALE_SECONDS`: a lock or heartbeat older than this belongs to a dead server. @default 30 */
  staleSeconds: number;
}

export class ConfigError extends Error {
  readonly code = 'CONFIG';
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.trim());
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`Expected ${name} to be an integer ${min}–${max}, got \`${raw}\``);
  }
  return value;
}

function positive(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.trim());
  if (!Number.isFinite(value) || value <= 0) {
    throw new ConfigError(`Expected ${name} to be a number > 0, got \`${raw}\``);
  }
  return value;
}

function baseUrl(env: Env, name: string, fallback: string): string {
  const raw = env[name]?.trim() || fallback;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`Expected ${name} to be an http(s) URL, got \`${raw}\``);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`Expected ${name} to be an http(s) URL, got \`${raw}\``);
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

function optional(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

/** The value of `name` in lower case, else in upper case (as curl reads proxy variables): trimmed, or undefined. */
function proxyVariable(env: Env, name: string): string | undefined {
  const lower = env[name.toLowerCase()];
  const value = lower !== undefined ? lower : env[name.toUpperCase()];
  return value?.trim() || undefined;
}

/**
 * A proxy URL as curl reads it: `http://` assumed when no scheme is given, port 1080 when none;
 * only http:// proxies (https:// and socks ones are refused by name). Credentials in it become a
 * Proxy-Authorization value that is never printed: not in the ConfigError, not in the object.
 */
function proxyServer(env: Env, name: string): ProxyServer | undefined {
  const raw = proxyVariable(env, name);
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new ConfigError(`Expected ${name} to be a proxy URL like http://proxy:3128, got something else (not shown: it may carry a password)`);
  }
  if (url.protocol !== 'http:') {
    throw new ConfigError(`Expected ${name} to be an http:// proxy, got a ${url.protocol.replace(/:$/, '')} one; only http proxies are supported`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port) || 1080;
  const server: ProxyServer = { host, port, display: `${url.hostname}:${port}` };
  if (url.username || url.password) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    Object.defineProperty(server, 'authorization', { value: `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`, enumerable: false });
  }
  return Object.freeze(server);
}

/** HTTPS_PROXY, HTTP_PROXY and NO_PROXY (lower-case first), read once. */
export function loadProxyConfig(env: Env): ProxyConfig {
  const https = proxyServer(env, 'HTTPS_PROXY');
  const http = proxyServer(env, 'HTTP_PROXY');
  const noProxy = Object.freeze(
    (proxyVariable(env, 'NO_PROXY') ?? '')
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean),
  );
  return Object.freeze({ ...(http ? { http } : {}), ...(https ? { https } : {}), noProxy });
}

/**
 * Environment → validated, frozen options. Throws ConfigError with a message that names the
 * variable, what was expected and what came. Relative paths resolve against `cwd`.
 */
export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Readonly<Config> {
  const origins = (env.ALLOWED_ORIGINS ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean)
    .map((o) => {
      try {
        return new URL(o).origin;
      } catch {
        throw new ConfigError(`Expected ALLOWED_ORIGINS to be a comma-separated list of origins like https://example.com, got \`${o}\``);
      }
    });
  const config: Config = {
    port: integer(env, 'PORT', 8866, 0, 65535),
    host: optional(env, 'HOST') ?? '127.0.0.1',
    modelsDir: path.resolve(cwd, optional(env, 'MODELS_DIR') ?? './models'),
    statusFile: path.resolve(cwd, optional(env, 'STATUS_FILE') ?? './.download_status.json'),
    catalogFile: path.resolve(cwd, optional(env, 'CATALOG_FILE') ?? './model_configs.json'),
    maxConcurrent: integer(env, 'MAX_CONCURRENT', 3, 1, 64),
    connections: integer(env, 'CONNECTIONS', 4, 1, 32),
    allowedOrigins: Object.freeze(origins),
    hfEndpoint: baseUrl(env, 'HF_ENDPOINT', 'https://huggingface.co'),
    civitaiEndpoint: baseUrl(env, 'CIVITAI_ENDPOINT', 'https://civitai.com'),
    retentionHours: positive(env, 'RETENTION_HOURS', 24),
    staleMinutes: positive(env, 'STALE_MINUTES', 10),
    proxy: loadProxyConfig(env),
  };
  const apiToken = optional(env, 'API_TOKEN');
  if (apiToken) config.apiToken = apiToken;
  const hfToken = optional(env, 'HF_TOKEN');
  if (hfToken) config.hfToken = hfToken;
  const civitaiToken = optional(env, 'CIVITAI_TOKEN');
  if (civitaiToken) config.civitaiToken = civitaiToken;
  // Workflows (server/workflows/): read at each plan, so a missing file is reported there.
  const extraModelPaths = optional(env, 'EXTRA_MODEL_PATHS');
  if (extraModelPaths) config.extraModelPaths = path.resolve(cwd, extraModelPaths);
  const modelListFile = optional(env, 'MODEL_LIST_FILE');
  if (modelListFile) config.modelListFile = path.resolve(cwd, modelListFile);
  const fleetDir = optional(env, 'FLEET_DIR');
  if (fleetDir) config.fleet = Object.freeze(fleetConfig(env, path.resolve(cwd, fleetDir), config.modelsDir));
  return Object.freeze(config);
}

const INSTANCE_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** INSTANCE_NAME and FLEET_STALE_SECONDS are read only in fleet mode: a lone server ignores them. */
function fleetConfig(env: Env, dir: string, modelsDir: string): FleetConfig {
  const inside = (a: string, b: string): boolean => a === b || a.startsWith(b + path.sep);
  if (inside(dir, modelsDir) || inside(modelsDir, dir)) {
    throw new ConfigError(`Expected FLEET_DIR to be a folder outside MODELS_DIR (and not holding it), got \`${dir}\``);
  }
  const given = optional(env, 'INSTANCE_NAME');
  const instance = given ?? os.hostname();
  if (!INSTANCE_NAME.test(instance) || instance === '.' || instance === '..') {
    throw new ConfigError(
      given === undefined
        ? `The host name \`${instance}\` cannot name this server in the fleet; set INSTANCE_NAME (1–64 of A-Z a-z 0-9 . _ -)`
        : `Expected INSTANCE_NAME to be 1–64 of A-Z a-z 0-9 . _ -, got \`${given}\``,
    );
  }
  const staleSeconds = positive(env, 'FLEET_STALE_SECONDS', 30);
  if (staleSeconds < 2) throw new ConfigError(`Expected FLEET_STALE_SECONDS to be a number ≥ 2, got \`${env.FLEET_STALE_SECONDS}\``);
  return { dir, instance, staleSeconds };
}
