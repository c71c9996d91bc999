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
 * Other IPv6 spellings of an IPv4 address (IPv4-compatible `::a9fe:a9fe`, NAT64's well-known
 * 64:ff9b::/96 and local-use 64:ff9b:1::/48 of RFC 8215) are unwrapped by `embeddedIPv4` below.
 */
const FORBIDDEN = new net.BlockList();
FORBIDDEN.addSubnet('169.254.0.0', 16, 'ipv4');
FORBIDDEN.addAddress('100.100.100.200', 'ipv4'); // Alibaba Cloud's metadata endpoint
FORBIDDEN.addSubnet('fe80::', 10, 'ipv6');
FORBIDDEN.addAddress('fd00:ec2::254', 'ipv6'); // AWS's IPv6 metadata endpoint
FORBIDDEN.addAddress('fd20:ce::254', 'ipv6'); // Google Cloud's IPv6 metadata endpoint

/** The 16 bytes of an IPv6 address (with or without a dotted IPv4 tail), or null. */
function ipv6Bytes(address: string): number[] | null {
  let text = address.toLowerCase().replace(/%.*$/, '');
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const o = tail[1]!.split('.').map(Number);
    text = text.slice(0, -tail[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const groups = halves.length === 2 ? [...head, ...Array<string>(8 - head.length - rest.length).fill('0'), ...rest] : head;
  if (groups.length !== 8) return null;
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

/**
 * The IPv4 addresses an IPv6 address may stand for: IPv4-compatible (::/96), NAT64 well-known
 * (64:ff9b::/96) and local-use (64:ff9b:1::/48, where the operator picks the prefix length, so
 * every RFC 6052 layout is tried).
 */
function embeddedIPv4(address: string): string[] {
  const b = ipv6Bytes(address);
  if (!b) return [];
  const v4 = (bytes: number[]): string => bytes.join('.');
  const zero = (from: number, to: number): boolean => b.slice(from, to).every((x) => x === 0);
  if (zero(0, 12)) return [v4(b.slice(12))];
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b) {
    if (zero(4, 12)) return [v4(b.slice(12))];
    if (b[4] === 0 && b[5] === 1) {
      // RFC 6052 section 2.2: /48, /56 and /64 skip bits 64-71; /96 puts the address last.
      return [v4([b[6]!, b[7]!, b[9]!, b[10]!]), v4([b[7]!, b[9]!, b[10]!, b[11]!]), v4(b.slice(9, 13)), v4(b.slice(12))];
    }
  }
  return [];
}

/**
 * The verdicts of isForbiddenAddress for the addresses met lately: a BlockList check builds
 * SocketAddress objects, and every request of a group's hundreds of files asks again for the same
 * few addresses. Bounded: cleared when full.
 */
const verdicts = new Map<string, boolean>();
const MAX_VERDICTS = 1024;

/** True for link-local and cloud-metadata addresses, in any spelling; those are never fetched. */
export function isForbiddenAddress(address: string): boolean {
  let verdict = verdicts.get(address);
  if (verdict === undefined) {
    verdict = judgeAddress(address);
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    verdicts.set(address, verdict);
  }
  return verdict;
}

function judgeAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 0) return false;
  if (family === 4) return FORBIDDEN.check(address, 'ipv4');
  return FORBIDDEN.check(address, 'ipv6') || embeddedIPv4(address).some((v4) => FORBIDDEN.check(v4, 'ipv4'));
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
