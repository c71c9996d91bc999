import dns from 'node:dns';
import net from 'node:net';
import { AppError, badRequest } from '../errors';

export const MAX_URL_LENGTH = 8 * 1024;

/** Query parameters that carry credentials (Civitai `token`, signed-URL signatures). */
const SECRET_PARAMS = /^(token|access_token|api_key|apikey|key|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|policy|key-pair-id)$/i;

/** Parses a URL a user gave us: http(s) only, no embedded credentials, at most 8 KiB. */
export function parseSourceUrl(raw: unknown): URL {
  if (typeof raw !== 'string' || raw.trim() === '') {
    throw badRequest('INVALID_URL', 'Expected `url` to be an http(s) URL');
  }
  if (raw.length > MAX_URL_LENGTH) {
    throw badRequest('URL_TOO_LONG', `The URL is ${raw.length} characters long; at most ${MAX_URL_LENGTH} are accepted`);
  }
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw badRequest('INVALID_URL', `\`${raw.slice(0, 200)}\` is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badRequest('UNSUPPORTED_URL', `Only http and https URLs can be downloaded, got ${url.protocol.replace(/:$/, '')}`);
  }
  if (url.username || url.password) {
    throw badRequest('URL_CREDENTIALS', 'The URL carries a user name or password; remove them (use HF_TOKEN or CIVITAI_TOKEN for those hosts)');
  }
  checkAddressLiteral(url.hostname);
  url.hash = '';
  return url;
}

/** The URL without credentials: what may be stored, logged and shown. */
export function redactUrl(url: URL | string): string {
  const u = new URL(url.toString());
  u.username = '';
  u.password = '';
  for (const key of [...u.searchParams.keys()]) {
    if (SECRET_PARAMS.test(key)) u.searchParams.delete(key);
  }
  return u.toString();
}

/**
 * Link-local and cloud-metadata networks. A BlockList also matches the IPv4 ones written as
 * IPv4-mapped IPv6 in either spelling (`::ffff:169.254.169.254`, `::ffff:a9fe:a9fe`): the WHATWG
 * URL parser turns the first into the second, and a dual-stack socket connects to either over IPv4.
 * NAT64's well-known prefix (64:ff9b::/96, RFC 6052) reaches the same IPv4 hosts on IPv6-only pods.
 */
const FORBIDDEN = new net.BlockList();
FORBIDDEN.addSubnet('169.254.0.0', 16, 'ipv4');
FORBIDDEN.addSubnet('fe80::', 10, 'ipv6');
FORBIDDEN.addSubnet('64:ff9b::a9fe:0', 112, 'ipv6');
FORBIDDEN.addAddress('fd00:ec2::254', 'ipv6'); // AWS's IPv6 metadata endpoint

/** True for link-local and cloud-metadata addresses (169.254.0.0/16, fe80::/10), which are never fetched. */
export function isForbiddenAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 0) return false;
  return FORBIDDEN.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

function forbidden(host: string): AppError {
  return new AppError('FORBIDDEN_ADDRESS', `${host} is a link-local or cloud-metadata address; Model Downloader never fetches those`, {
    status: 400,
  });
}

/** Refuses a URL whose host is written as a forbidden IP address. */
export function checkAddressLiteral(hostname: string): void {
  const bare = hostname.replace(/^\[|\]$/g, '');
  if (isForbiddenAddress(bare)) throw forbidden(hostname);
}

/**
 * A `lookup` for http agents that refuses to connect to forbidden addresses, so that neither a
 * redirect nor a DNS answer can lead a download there.
 */
export const guardedLookup: typeof dns.lookup = ((hostname: string, options: unknown, callback: unknown) => {
  const cb = (typeof options === 'function' ? options : callback) as (...args: unknown[]) => void;
  const opts = (typeof options === 'function' ? {} : options ?? {}) as dns.LookupOptions;
  dns.lookup(hostname, { ...opts, all: true }, (err, addresses) => {
    if (err) return cb(err);
    const list = addresses as dns.LookupAddress[];
    const bad = list.find((a) => isForbiddenAddress(a.address));
    if (bad) return cb(forbidden(`${hostname} (${bad.address})`));
    if (opts.all) return cb(null, list);
    const first = list[0];
    if (!first) return cb(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }));
    cb(null, first.address, first.family);
  });
}) as typeof dns.lookup;
