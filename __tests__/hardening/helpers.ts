/**
 * Helpers for the hardening suites: what a test needs to prove that a request changed nothing
 * (every file under a folder, with its content hash) and went nowhere (every outgoing HTTP request
 * and TCP connection this process made).
 */
import crypto from 'node:crypto';
import dc from 'node:diagnostics_channel';
import fs from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';

/** Every file and folder under `root` (relative path → `dir` or `<size>:<sha256>`), symlinks not followed. */
export async function snapshotTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const d of entries) {
      const abs = path.join(dir, d.name);
      const rel = path.relative(root, abs);
      if (d.isDirectory()) {
        out.set(rel, 'dir');
        await walk(abs);
      } else if (d.isFile()) {
        const data = await fs.readFile(abs);
        out.set(rel, `${data.length}:${crypto.createHash('sha256').update(data).digest('hex')}`);
      } else {
        out.set(rel, 'other');
      }
    }
  };
  await walk(root);
  return out;
}

/** The differences between two snapshots, as readable lines (empty when equal). */
export function treeDiff(before: Map<string, string>, after: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const [k, v] of after) {
    if (!before.has(k)) lines.push(`created ${k}`);
    else if (before.get(k) !== v) lines.push(`changed ${k}`);
  }
  for (const k of before.keys()) if (!after.has(k)) lines.push(`removed ${k}`);
  return lines;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

/**
 * One HTTP request with full control of the headers (Host, Content-Length, chunked bodies), which
 * fetch does not allow. Resolves with the answer even when the server answers before it has read
 * the whole body (then the client's write may fail with EPIPE/ECONNRESET: ignored).
 */
export function rawRequest(
  base: string,
  options: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer | Buffer[]; timeoutMs?: number },
): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, method: options.method ?? 'GET', path: options.path, headers: options.headers ?? {}, agent: false, setHost: !(options.headers && 'Host' in options.headers) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer to ${options.method ?? 'GET'} ${options.path} within ${options.timeoutMs ?? 5000} ms`));
    }, options.timeoutMs ?? 5000);
    req.on('close', () => clearTimeout(timer));
    // A WebSocket handshake that succeeded: report 101 and drop the connection.
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 101, headers: res.headers, text: '', json: undefined });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // The server may answer (413) and close before the body is sent: the response still comes.
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') return;
      reject(err);
    });
    const body = options.body;
    if (Array.isArray(body)) {
      for (const part of body) req.write(part);
      req.end();
    } else {
      req.end(body);
    }
  });
}

export interface OutgoingLog {
  /** `host[:port] path` of every http.request this process started (blocked ones included). */
  requests: string[];
  /** Remote address of every TCP connection this process opened (once connected). */
  connections: string[];
  /** Stops recording. */
  stop(): void;
}

/**
 * Records every outgoing HTTP request and TCP connection of this process (Node's diagnostics
 * channels), so a test can prove that a refused or guarded download fetched nothing. A request
 * whose host `block` matches is destroyed before it connects: a tripwire, so that a test of a
 * protection that regressed fails without ever reaching a real metadata service; so is a socket
 * whose DNS answer `block` matches.
 */
export function watchOutgoing(block: (host: string) => boolean = () => false): OutgoingLog {
  const log: OutgoingLog = { requests: [], connections: [], stop: () => undefined };
  const onRequest = (message: unknown): void => {
    const { request } = message as { request: http.ClientRequest };
    const host = String(request.getHeader('host') ?? request.host);
    log.requests.push(`${host} ${request.path}`);
    if (block(host)) request.destroy(Object.assign(new Error(`tripwire: a request to ${host} was started`), { code: 'TRIPWIRE' }));
  };
  const onSocket = (message: unknown): void => {
    const { socket } = message as { socket: net.Socket };
    socket.once('connect', () => log.connections.push(`${socket.remoteAddress}:${socket.remotePort}`));
    // A name resolved to a blocked address: destroyed before it connects (net skips the connect
    // of a socket destroyed in its 'lookup' listener).
    socket.once('lookup', (err: Error | null, address: string) => {
      if (err || !block(address)) return;
      log.requests.push(`${address} (resolved)`);
      socket.destroy(Object.assign(new Error(`tripwire: a connection to ${address} was started`), { code: 'TRIPWIRE' }));
    });
  };
  dc.subscribe('http.client.request.start', onRequest);
  dc.subscribe('net.client.socket', onSocket);
  log.stop = () => {
    dc.unsubscribe('http.client.request.start', onRequest);
    dc.unsubscribe('net.client.socket', onSocket);
  };
  return log;
}
