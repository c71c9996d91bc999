/*
 * Owns how a metadata request's hop goes through a proxy: HTTPS_PROXY, HTTP_PROXY and NO_PROXY as
 * downloads read them (net/proxy.ts), decided again at every hop. An https hop goes through a
 * CONNECT tunnel (net/tunnel-agent.ts: the downloads' own CONNECT, the proxy reached through the
 * address guard), an http hop in absolute form to the proxy (axios's `proxy`, given per hop; axios
 * never reads the environment here). The proxy's credentials go to the proxy only: on the CONNECT,
 * or as Proxy-Authorization on an http hop through it. Also what the proxy's failures are called.
 */
import http from 'node:http';
import type { AxiosRequestConfig } from 'axios';
import type { ProxyConfig, ProxyServer } from '../../config';
import { AppError } from '../../errors';
import { proxyUnreachable, type TlsOptions } from '../../net/dial';
import { proxyFor } from '../../net/proxy';
import { TunnelAgent } from '../../net/tunnel-agent';
import { guardedLookup } from '../../net/url-policy';

/**
 * The agent of http hops through a proxy: to the proxy, through the address guard, a connection a
 * request (tinyproxy, for one, closes the client's connection after each answer: a kept one would
 * fail the next request as it is reused).
 */
const proxyHopAgent = new http.Agent({ keepAlive: false, lookup: guardedLookup });

/** One hop through a proxy: the axios options and the headers that send it there. */
export interface ProxyHop {
  proxy: ProxyServer;
  config: AxiosRequestConfig;
  headers: Record<string, string>;
}

export interface ProxyHopsOptions {
  proxy?: ProxyConfig | undefined;
  /** TLS options for the host at the end of a tunnel (a test's CA). */
  tls?: TlsOptions | undefined;
  /** Connecting to the proxy, its answer to CONNECT, the TLS handshake inside the tunnel: each at most this long. */
  limitMs: number;
}

/** The way through a proxy for each hop's URL, or undefined for a hop that goes direct. */
export function createProxyHops(o: ProxyHopsOptions): (url: URL) => ProxyHop | undefined {
  // A tunnel agent per proxy: its idle tunnels are kept for the next page of a listing.
  const tunnels = new Map<ProxyServer, TunnelAgent>();
  const tunnelThrough = (proxy: ProxyServer): TunnelAgent => {
    let agent = tunnels.get(proxy);
    if (!agent) {
      agent = new TunnelAgent({ proxy, tls: o.tls, timeouts: { connectMs: o.limitMs, tlsMs: o.limitMs, headMs: o.limitMs } });
      tunnels.set(proxy, agent);
    }
    return agent;
  };
  return (url): ProxyHop | undefined => {
    const proxy = proxyFor(url, o.proxy);
    if (!proxy) return undefined;
    if (url.protocol === 'https:') return { proxy, config: { httpsAgent: tunnelThrough(proxy) }, headers: {} };
    return {
      proxy,
      config: { proxy: { protocol: 'http', host: proxy.host, port: proxy.port }, httpAgent: proxyHopAgent },
      headers: proxy.authorization ? { 'Proxy-Authorization': proxy.authorization } : {},
    };
  };
}

/** Errors of an http hop's connection that mean the proxy was not reached. */
const NOT_REACHED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT']);
/** The proxy's and the tunnel's failures (net/dial.ts). */
const PROXY_CODES = new Set(['PROXY_REFUSED', 'PROXY_UNREACHABLE', 'CONNECT_TIMEOUT', 'HEAD_TIMEOUT', 'TLS_TIMEOUT']);

/**
 * A transport failure of a hop that is the proxy's, said as a failure to reach `label` (a 502),
 * naming the proxy as downloads do; undefined when it is not the proxy's. `ours` is the AppError
 * in the failure's causes, if any; `cause` the failure without anything that carries credentials.
 */
export function proxyFailure(hop: ProxyHop | undefined, url: URL, label: string, ours: AppError | undefined, errno: string | undefined, cause: Error): AppError | undefined {
  if (!hop) return undefined;
  const failure = ours ?? (url.protocol === 'http:' && errno && NOT_REACHED.has(errno) ? proxyUnreachable(hop.proxy, cause) : undefined);
  if (!failure || !PROXY_CODES.has(failure.code)) return undefined;
  return new AppError(failure.code, `Could not reach ${label}: ${failure.message}`, { status: 502, retryable: failure.retryable, cause: failure });
}

/** A 407 to an http hop through a proxy: the proxy's refusal, not the host's answer. */
export function proxyRefusal(hop: ProxyHop | undefined, url: URL, label: string, status: number): AppError | undefined {
  if (!hop || url.protocol !== 'http:' || status !== 407) return undefined;
  return new AppError('PROXY_REFUSED', `Could not reach ${label}: the proxy at ${hop.proxy.display} refused to fetch ${url.host}: 407, it wants other credentials (check HTTP_PROXY)`, { status: 502 });
}
