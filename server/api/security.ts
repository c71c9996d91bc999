import crypto from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import type { Config } from '../config';
import { AppError } from '../errors';

type Req = Pick<http.IncomingMessage, 'headers' | 'url'>;

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return LOOPBACK_NAMES.has(bare) || bare.endsWith('.localhost') || (net.isIPv4(bare) && bare.startsWith('127.'));
}

/** The hostname of a Host header (`example.com:8866`, `[::1]:8866`). */
function hostnameOf(hostHeader: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(hostHeader.trim());
  return (m?.[1] ?? hostHeader).toLowerCase();
}

/**
 * DNS-rebinding guard: a server bound to loopback answers only requests addressed to a loopback
 * name. A page on evil.example whose name now resolves to 127.0.0.1 still sends `Host: evil.example`.
 */
export function checkHost(req: Req, config: Pick<Config, 'host'>): AppError | undefined {
  if (!isLoopbackHost(config.host)) return undefined;
  const host = req.headers.host;
  if (!host || !isLoopbackHost(hostnameOf(host))) {
    return new AppError('FORBIDDEN_HOST', `This server only answers requests to localhost, not to \`${host ?? ''}\``, { status: 403 });
  }
  return undefined;
}

/** Whether the browser origin of a request is the server's own or one of ALLOWED_ORIGINS. */
function originAllowed(origin: string, req: Req, config: Pick<Config, 'allowedOrigins'>): boolean {
  if (config.allowedOrigins.includes(origin)) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // includes the opaque origin "null"
  }
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.host === req.headers.host;
}

/**
 * Cross-site guard (aria2's open RPC let any web page drive it): a foreign `Origin`, or
 * `Sec-Fetch-Site: cross-site`, may not change anything. Requests without either (curl, bots) pass.
 */
export function checkOrigin(req: Req, config: Pick<Config, 'allowedOrigins'>): AppError | undefined {
  const origin = req.headers.origin;
  if (origin !== undefined && !originAllowed(origin, req, config)) {
    return new AppError('FORBIDDEN_ORIGIN', `Requests from ${origin} are not allowed; add it to ALLOWED_ORIGINS to allow them`, { status: 403 });
  }
  if (origin === undefined && req.headers['sec-fetch-site'] === 'cross-site') {
    return new AppError('FORBIDDEN_ORIGIN', 'Cross-site requests are not allowed', { status: 403 });
  }
  return undefined;
}

const digest = (s: string): Buffer => crypto.createHash('sha256').update(s).digest();

/** `API_TOKEN` check, in constant time: `Authorization: Bearer`, or `?token=` where allowed (WebSocket). */
export function checkToken(req: Req, config: Pick<Config, 'apiToken'>, allowQuery: boolean): AppError | undefined {
  if (!config.apiToken) return undefined;
  let given: string | undefined;
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) given = auth.slice(7).trim();
  if (given === undefined && allowQuery && req.url) {
    given = new URL(req.url, 'http://x').searchParams.get('token') ?? undefined;
  }
  if (given === undefined || !crypto.timingSafeEqual(digest(given), digest(config.apiToken))) {
    return new AppError('UNAUTHORIZED', 'This server needs its API token: send `Authorization: Bearer <API_TOKEN>`', { status: 401 });
  }
  return undefined;
}
