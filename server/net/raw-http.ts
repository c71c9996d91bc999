/*
 * A small HTTP/1.1 client for GETs of large files: the façade of the byte path. `request()` sends
 * a GET on a connection of the given Agent and resolves with the status and headers; the body is
 * read as a stream or moved to a file with `pump()`. Why our own client, not Node's: see
 * connection.ts. The parts, each in its own file:
 *   agent.ts         connections per host, idle ones kept, the block pool, TLS sessions (one Agent per Downloader)
 *   connection.ts    one socket reading into reused 1 MiB blocks, its state and time limits, a proxy's tunnel
 *   proxy.ts         which proxy a URL goes through (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)
 *   tls-sessions.ts  TLS sessions kept for resumption
 *   content-range.ts a 206's Content-Range checked against what was asked (for the downloader)
 *   exchange.ts      the request head out, the response head in
 *   head-parser.ts   status line and header fields
 *   body-framing.ts  where a body ends: Content-Length, chunked, or the close
 *   body.ts          the response body as a Readable, and the connection's way back to its agent
 *   pump.ts          a body moved to a file, block by block
 *   buffer-pool.ts   the blocks
 */
import { AppError } from '../errors';
import type { Agent } from './agent';
import { RawBody } from './body';
import type { Timeouts, TlsOptions } from './connection';
import { exchange, requestHead, STALE } from './exchange';

export { Agent, createAgent, type AgentOptions } from './agent';
export { RawBody } from './body';
export { DEFAULT_TIMEOUTS, type Timeouts, type TlsOptions } from './connection';
export { Pump, type PumpOptions } from './pump';

export interface RawResponse {
  status: number;
  /** Field names in lower case, in a map with no prototype; list fields joined with ", " (single-value fields are refused when repeated differently). */
  headers: Record<string, string | undefined>;
  body: RawBody;
}

export interface RequestOptions {
  /** Whose connections to use and count (the Downloader's). */
  agent: Agent;
  /** For an https origin (a test's CA); connections made with other TLS options are pooled apart. */
  tls?: TlsOptions;
  /** Time limits of this request, over the agent's. */
  timeouts?: Partial<Timeouts>;
}

/**
 * Sends a GET on an idle connection to the host or a new one, and resolves with the status and
 * headers once they arrived; the body is read from the response's `body`. An idle connection the
 * server closed meanwhile is retried once on a new one. Aborting `signal` ends the request, or
 * the body's reading, at once.
 */
export async function request(url: URL, headers: Record<string, string>, signal: AbortSignal, options: RequestOptions): Promise<RawResponse> {
  const { agent } = options;
  const key = agent.keyFor(url, options.tls);
  const proxy = agent.proxyFor(url);
  // An http URL through a proxy is asked of the proxy itself; an https one goes through a CONNECT tunnel.
  const head = requestHead(url, headers, proxy && url.protocol === 'http:' ? proxy : undefined);
  if (signal.aborted) throw signal.reason;
  await agent.takeSlot(key, signal);
  try {
    for (;;) {
      signal.throwIfAborted(); // it may have fired while the slot was handed over
      const conn = agent.connect(key, url, options.tls, options.timeouts);
      try {
        const res = await exchange(conn, head, signal);
        signal.throwIfAborted();
        if (res.status === 407 && proxy && url.protocol === 'http:') {
          // The proxy's own answer, not the host's: said as such (the connection is closed below).
          throw new AppError('PROXY_REFUSED', `the proxy at ${proxy.display} refused to fetch ${url.host}: 407, it wants other credentials (check HTTP_PROXY)`, { retryable: false });
        }
        return { status: res.status, headers: res.headers, body: new RawBody(conn, res, signal, agent) };
      } catch (err) {
        conn.dispose();
        if (err === STALE) continue;
        throw err;
      }
    }
  } catch (err) {
    agent.giveSlot(key);
    throw err;
  }
}
