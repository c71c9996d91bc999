/*
 * Owns CONNECT tunnels for node:https requests (the metadata APIs' axios client): an https.Agent
 * whose every connection is dial.ts's `openTunnel` — the same CONNECT as a download's, its answer
 * read as strictly, the proxy reached through the address guard, refusals and failures named as
 * for downloads (PROXY_REFUSED, PROXY_UNREACHABLE, the time limits) and never with the proxy's
 * credentials — then TLS to the host inside the tunnel, our options over the caller's. Idle
 * tunnels are kept (keep-alive), one pool per target host, as any https.Agent does.
 */
import type { Duplex } from 'node:stream';
import https from 'node:https';
import net from 'node:net';
import type tls from 'node:tls';
import type { ProxyServer } from '../config';
import { AppError } from '../errors';
import { DEFAULT_TIMEOUTS, handshake, openTunnel, proxyUnreachable, seconds, timeoutError, type Timeouts, type TlsOptions } from './dial';
import { TlsSessions } from './tls-sessions';

export interface TunnelAgentOptions {
  proxy: ProxyServer;
  /** TLS options for the host at the end of the tunnel (a test's CA); where it connects is not theirs to set. */
  tls?: TlsOptions | undefined;
  /** Connect (to the proxy), the proxy's answer to CONNECT, the TLS handshake; the body's idle limit is not used here. */
  timeouts?: Partial<Timeouts> | undefined;
}

export class TunnelAgent extends https.Agent {
  private readonly proxy: ProxyServer;
  private readonly tlsOptions: TlsOptions | undefined;
  private readonly limits: Timeouts;
  private readonly sessions = new TlsSessions();

  constructor(o: TunnelAgentOptions) {
    super({ keepAlive: true });
    this.proxy = o.proxy;
    this.tlsOptions = o.tls;
    this.limits = { ...DEFAULT_TIMEOUTS, ...Object.fromEntries(Object.entries(o.timeouts ?? {}).filter(([, v]) => v !== undefined)) };
  }

  /** A tunnel to `options.host:port`, handed to `callback` once TLS inside it is up (Node's Agent takes a socket that way too). */
  override createConnection(options: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const done = callback ?? (() => undefined);
    const host = String(options.hostname ?? options.host ?? 'localhost').replace(/^\[|\]$/g, '');
    const port = Number(options.port) || 443;
    const url = new URL(`https://${net.isIPv6(host) ? `[${host}]` : host}:${port}/`);
    const o = { key: `${url.protocol}//${url.host}`, url, tls: this.tlsOptions, timeouts: this.limits, proxy: this.proxy, sessions: this.sessions };
    let timer: NodeJS.Timeout | undefined;
    let reached = false;
    let settled = false;
    let secure: tls.TLSSocket | undefined;
    const disarm = (): void => {
      clearTimeout(timer);
      timer = undefined;
    };
    const arm = (ms: number, make: () => AppError): void => {
      disarm();
      timer = setTimeout(() => fail(make()), ms);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      disarm();
      secure?.destroy();
      raw.destroy();
      done(!reached && !(err instanceof AppError) ? proxyUnreachable(this.proxy, err) : err, undefined as unknown as Duplex);
    };
    arm(this.limits.connectMs, () => timeoutError('CONNECT_TIMEOUT', `could not connect to the proxy at ${this.proxy.display} in ${seconds(this.limits.connectMs)}`));
    const raw: net.Socket = openTunnel(o, this.proxy, {
      reached: () => {
        reached = true;
        disarm();
      },
      arm,
      disarm,
      failed: fail,
      secured: (s) => {
        secure = s;
        s.on('error', fail);
        handshake(s, o, { arm }, () => {
          disarm();
          s.removeListener('error', fail);
          settled = true;
          done(null, s);
        });
      },
    });
    return undefined;
  }
}
