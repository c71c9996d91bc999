/*
 * Owns reaching the other end: a TCP or TLS socket to the host, or to the proxy for an http URL,
 * or a CONNECT tunnel through the proxy with TLS inside it for an https one; the options TLS gets
 * (ours over the caller's, the session to resume), the TLS handshake (its limit, its session kept),
 * naming a proxy that cannot be reached, and the time limits' defaults and errors.
 */
import net from 'node:net';
import tls from 'node:tls';
import { AppError } from '../errors';
import type { ProxyServer } from '../config';
import type { BufferPool } from './buffer-pool';
import { HeadScanner, parseHead } from './head-parser';
import type { TlsSessions } from './tls-sessions';
import { guardedLookup } from './url-policy';

/**
 * TLS options a caller may give (a test's CA). Where the socket goes and how its host is looked
 * up are not theirs to set: they are left out here, and overridden at run time as well.
 */
export type TlsOptions = Omit<tls.ConnectionOptions, 'host' | 'port' | 'path' | 'socket' | 'lookup' | 'onread'>;

/** The time limits of the client, in ms; each ends its request with a retryable AppError of its own code. */
export interface Timeouts {
  /** From the start until the TCP connection (to the host or the proxy) is up: CONNECT_TIMEOUT. */
  connectMs: number;
  /** For the TLS handshake: TLS_TIMEOUT. */
  tlsMs: number;
  /** From the request sent (the connection up) until the whole response head arrived (a proxy's answer to CONNECT too): HEAD_TIMEOUT. */
  headMs: number;
  /** While a body is read and its reader is not holding it back: no byte for this long is BODY_TIMEOUT. */
  bodyIdleMs: number;
}

export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({ connectMs: 30_000, tlsMs: 30_000, headMs: 30_000, bodyIdleMs: 60_000 });

export interface ConnectionOptions {
  /** What its agent pools and counts it by. */
  key: string;
  url: URL;
  tls?: TlsOptions | undefined;
  pool: BufferPool;
  timeouts: Timeouts;
  /** The proxy it goes through: a CONNECT tunnel for https, the proxy itself for http. */
  proxy?: ProxyServer | undefined;
  /** Where TLS sessions are kept for resumption (the agent's). */
  sessions?: TlsSessions | undefined;
  /** Whether a peer is this server itself (its listen address): such a connection is refused. */
  isSelf?: ((address: string | undefined, port: number | undefined) => boolean) | undefined;
}

/** What reaching the other end needs of a connection's options (a tunnel for node:https too: tunnel-agent.ts). */
export type DialOptions = Pick<ConnectionOptions, 'key' | 'url' | 'tls' | 'timeouts' | 'proxy' | 'sessions'>;

export const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))} s`;

export function timeoutError(code: string, message: string): AppError {
  return new AppError(code, message, { retryable: true });
}

/** A failure before the TCP connection to the proxy was up: the proxy's, named as such (and never with its credentials). */
export function proxyUnreachable(proxy: ProxyServer, err: Error): AppError {
  const errno = (err as NodeJS.ErrnoException).code;
  return new AppError('PROXY_UNREACHABLE', `could not reach the proxy at ${proxy.display} (${errno ?? err.message})`, { cause: err, retryable: true });
}

/**
 * TLS on `socket` (TCP connecting to the host, or a tunnel that is up): its time limit (armed with
 * the connection's `limits`), its session kept for the next connection, and `up` once it is done.
 */
export function handshake(socket: tls.TLSSocket, o: DialOptions, limits: Pick<TunnelHooks, 'arm'>, up: () => void): void {
  const tlsUp = (): void => limits.arm(o.timeouts.tlsMs, () => timeoutError('TLS_TIMEOUT', `${o.url.host} accepted the connection but did not finish the TLS handshake in ${seconds(o.timeouts.tlsMs)}`));
  if (o.proxy) tlsUp(); // the TCP connection (the tunnel) is up already
  else socket.once('connect', tlsUp);
  const sessionKey = tlsSessionKey(o);
  socket.on('session', (session: Buffer) => o.sessions?.set(sessionKey, session));
  socket.once('error', () => o.sessions?.delete(sessionKey));
  socket.once('secureConnect', () => up());
}

/** What a tunnel tells the connection it is being made for. */
export interface TunnelHooks {
  /** The TCP connection to the proxy is up. */
  reached(): void;
  /** Starts the connection's time limit (here: for the proxy's answer); `disarm` stops it. */
  arm(ms: number, make: () => AppError): void;
  disarm(): void;
  failed(err: Error): void;
  /** The proxy opened the tunnel: TLS to the host began over it. */
  secured(secure: tls.TLSSocket): void;
}

/**
 * An https connection through a proxy: TCP to the proxy, `CONNECT host:port`, its answer read as
 * strictly as any head, then TLS over the tunnel. Returns the TCP socket (the connection's socket
 * until TLS takes over: `secured`). A refusal fails the connection with PROXY_REFUSED and what the proxy said.
 */
export function openTunnel(o: DialOptions, proxy: ProxyServer, hooks: TunnelHooks): net.Socket {
  const raw = net.connect({ host: proxy.host, port: proxy.port, lookup: guardedLookup });
  raw.setNoDelay(true);
  const authority = `${o.url.hostname}:${portOf(o.url)}`;
  let got = Buffer.alloc(0);
  const scanner = new HeadScanner('answer to CONNECT');
  const onError = (err: Error): void => hooks.failed(err);
  const onClose = (): void => hooks.failed(new AppError('ECONNRESET', `the proxy at ${proxy.display} closed the connection before the tunnel to ${authority} was up`, { retryable: true }));
  const onData = (chunk: Buffer): void => {
    got = Buffer.concat([got, chunk]);
    let end: number;
    let status: number;
    let reason: string;
    try {
      end = scanner.scan(got);
      if (end < 0) return;
      const head = parseHead(got.toString('latin1', 0, end - 4));
      status = head.status;
      reason = /^\S+ \d{3} ?(.*)$/.exec(got.toString('latin1', 0, got.indexOf('\r\n')))?.[1] ?? '';
    } catch (err) {
      return void raw.destroy(err as Error);
    }
    raw.removeListener('data', onData);
    raw.removeListener('error', onError);
    raw.removeListener('close', onClose);
    raw.on('error', () => undefined); // the TLS socket over it reports what happens to it
    hooks.disarm();
    if (status < 200 || status >= 300) {
      raw.destroy();
      return hooks.failed(
        new AppError('PROXY_REFUSED', `the proxy at ${proxy.display} refused to connect to ${authority}: ${status}${reason ? ` ${reason.slice(0, 80)}` : ''}`, { retryable: status >= 500 || status === 408 || status === 429 }),
      );
    }
    if (got.length > end) return hooks.failed(new AppError('PROXY_REFUSED', `the proxy at ${proxy.display} sent bytes of its own after opening the tunnel to ${authority}`, { retryable: true }));
    raw.pause();
    hooks.secured(tls.connect(tlsConnectOptions(o, { socket: raw })));
  };
  raw.on('data', onData);
  raw.on('error', onError);
  raw.on('close', onClose);
  raw.once('connect', () => {
    hooks.reached();
    const auth = proxy.authorization ? `Proxy-Authorization: ${proxy.authorization}\r\n` : '';
    raw.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`, 'latin1');
    hooks.arm(o.timeouts.headMs, () => timeoutError('HEAD_TIMEOUT', `the proxy at ${proxy.display} accepted the connection but did not answer CONNECT ${authority} for ${seconds(o.timeouts.headMs)}`));
  });
  return raw;
}

const hostOf = (url: URL): string => url.hostname.replace(/^\[|\]$/g, '');
const portOf = (url: URL): number => Number(url.port) || (url.protocol === 'https:' ? 443 : 80);

/** What a TLS session is kept under: the connection's pool key (its origin and TLS options) and the name it was verified for. */
export function tlsSessionKey(o: DialOptions): string {
  const host = hostOf(o.url);
  return `${o.key}|${net.isIP(host) ? '' : host}`;
}

/**
 * The options of tls.connect. The caller's TLS options go first and ours last, so that none of
 * theirs can send the socket elsewhere (host, port, a Unix `path`, a ready `socket`) or around the
 * address guard (`lookup`): url-policy.ts refuses link-local and metadata addresses at every DNS
 * answer, and only that lookup ever resolves a host here.
 */
function tlsConnectOptions(o: DialOptions, where: { socket: net.Socket } | { onread: net.OnReadOpts }): tls.ConnectionOptions {
  const host = hostOf(o.url);
  const session = o.sessions?.get(tlsSessionKey(o));
  return {
    ...o.tls,
    host,
    port: portOf(o.url),
    path: undefined,
    socket: undefined,
    lookup: guardedLookup,
    ALPNProtocols: ['http/1.1'],
    ...(net.isIP(host) ? {} : { servername: host }),
    ...(session ? { session } : {}),
    ...where,
  };
}

/** Connects to the URL's host and port, or to the proxy for an http URL through one. */
export function openSocket(o: ConnectionOptions, onread: net.OnReadOpts): net.Socket {
  if (o.proxy) return net.connect({ host: o.proxy.host, port: o.proxy.port, lookup: guardedLookup, onread });
  if (o.url.protocol !== 'https:') return net.connect({ host: hostOf(o.url), port: portOf(o.url), lookup: guardedLookup, onread });
  // tls.connect takes `onread` too (documented; its types omit it).
  return tls.connect(tlsConnectOptions(o, { onread }));
}
