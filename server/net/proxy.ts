/*
 * Owns which proxy a URL goes through: HTTPS_PROXY for https, HTTP_PROXY for http (read once in
 * config.ts), unless NO_PROXY names its host — matched as curl matches it: `*` alone for every
 * host; a name for itself and its subdomains (a leading or trailing dot ignored, no partial
 * labels: example.com matches www.example.com, not notexample.com); an IP address, or a CIDR
 * range, for addresses written as such in the URL. Beyond curl, `host:port` matches that port only.
 * Through a proxy, the literal-address check of every hop still runs (http-client.ts), but names
 * are resolved by the proxy: DNS-based guarding of link-local and metadata addresses then happens
 * there, not here.
 */
import net from 'node:net';
import type { ProxyConfig, ProxyServer } from '../config';

export type { ProxyConfig, ProxyServer } from '../config';

/** The proxy for `url`, or undefined when it is reached directly. */
export function proxyFor(url: URL, config: ProxyConfig | undefined): ProxyServer | undefined {
  if (!config) return undefined;
  const proxy = url.protocol === 'https:' ? config.https : url.protocol === 'http:' ? config.http : undefined;
  if (!proxy || bypasses(url, config.noProxy)) return undefined;
  return proxy;
}

/** Whether NO_PROXY's entries name `url`'s host (and port, where an entry gives one). */
export function bypasses(url: URL, noProxy: readonly string[]): boolean {
  if (noProxy.length === 1 && noProxy[0] === '*') return true;
  const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const family = net.isIP(host);
  for (const raw of noProxy) {
    let entry = raw.toLowerCase();
    let entryPort: number | undefined;
    const withPort = /^(\[[^\]]+\]|[^:\]]+):(\d+)$/.exec(entry);
    if (withPort) {
      entry = withPort[1]!;
      entryPort = Number(withPort[2]);
    }
    entry = entry.replace(/^\[|\]$/g, '');
    if (entryPort !== undefined && entryPort !== port) continue;
    if (family !== 0) {
      if (addressMatches(host, family, entry)) return true;
      continue;
    }
    entry = entry.replace(/\.$/, '').replace(/^\./, '');
    if (entry === '') continue;
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** An IP address against an entry that is an address or a CIDR range of the same family. */
function addressMatches(host: string, family: number, entry: string): boolean {
  const [address, bitsText] = entry.split('/');
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (net.isIP(address!) !== family) return false;
  const list = new net.BlockList();
  const bits = bitsText === undefined ? (family === 4 ? 32 : 128) : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) return false;
  list.addSubnet(address!, bits, type);
  return list.check(host, type);
}
