import WebSocket from 'ws';
import { LiveClient, type ProbeResult, type WebSocketConstructor } from '../client/ws-client';
import type { Entry } from '../server/protocol/wire';
import { isActive as isActiveStatus } from '../server/protocol/status';
import { CliError, unauthorized, type Api } from './api';
import { createRenderer, type Output } from './render';

export interface WatchOptions {
  server: string;
  token?: string;
  api: Api;
  out: Output;
}

/** `ws://…/ws` for a server URL, keeping a reverse-proxy path prefix. */
export function wsUrl(server: string): string {
  const url = new URL('ws', server);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

const isActive = (e: Entry): boolean => isActiveStatus(e.status);

/**
 * Live bars for every download that is active, or becomes active while watching, until none is.
 * Resolves with the exit code: 0, or 1 when one of the watched downloads ended in `error`.
 * The same LiveClient as the page: snapshot first, seq-ordered updates, reconnection after a drop
 * (a restarting server is waited for), polling when WebSockets cannot get through.
 */
export function watch(o: WatchOptions): Promise<number> {
  // The token goes in a header rather than in the URL (?token=), where proxies would log it.
  const headers = o.token ? { Authorization: `Bearer ${o.token}` } : undefined;
  const Authed = class extends WebSocket {
    constructor(url: string) {
      super(url, headers ? { headers } : {});
    }
  } as unknown as WebSocketConstructor;
  const probe = async (): Promise<ProbeResult> => {
    try {
      const { body } = await o.api.request<{ downloads: Entry[] }>('GET', 'api/downloads');
      return { ok: true, downloads: body.downloads };
    } catch (err) {
      return { ok: false, unauthorized: err instanceof CliError && err.kind === 'unauthorized' };
    }
  };
  const client = new LiveClient({ url: wsUrl(o.server), WebSocket: Authed, probe, minBackoffMs: 250, maxBackoffMs: 4000, offlineAfter: 4 });
  const render = createRenderer(o.out);
  const watched = new Map<string, Entry>();
  let everConnected = false;

  return new Promise<number>((resolve, reject) => {
    let ended = false;
    const end = (result: number | CliError): void => {
      if (ended) return;
      ended = true;
      client.close();
      if (typeof result === 'number') resolve(result);
      else reject(result);
    };

    client.on('state', (info) => {
      if (info.state === 'live' || info.state === 'polling') everConnected = true;
      if (info.state === 'unauthorized') end(unauthorized(o.server));
      // Never connected: the server is not there. Once connected, a drop is waited out (a restart).
      else if (!everConnected && info.failures >= 2) end(new CliError(`Cannot reach ${o.server}. Is the server running (npm start)? Give its address with --server.`, 'unreachable'));
      else if (info.state === 'offline') end(new CliError(`Lost ${o.server}: it did not come back after ${info.failures} attempts`, 'unreachable'));
    });

    client.on('change', () => {
      for (const e of client.downloads.values()) if (isActive(e) && !watched.has(e.id)) watched.set(e.id, e);
      for (const id of watched.keys()) {
        const e = client.downloads.get(id);
        if (e) watched.set(id, e); // a removed (cleared) one keeps its last state
      }
      const shown = [...watched.values()];
      if ([...client.downloads.values()].some(isActive)) {
        render.draw(shown);
        return;
      }
      render.finish(shown);
      if (watched.size === 0) {
        o.out.write('No active downloads.\n');
        end(0);
        return;
      }
      const failed = shown.filter((e) => e.status === 'error');
      const count = (s: Entry['status']): number => shown.filter((e) => e.status === s).length;
      const parts = [`${count('completed')} completed`, ...(failed.length ? [`${failed.length} failed`] : []), ...(count('cancelled') ? [`${count('cancelled')} cancelled`] : []), ...(count('paused') ? [`${count('paused')} paused`] : [])];
      o.out.write(`\nDone: ${parts.join(', ')}.\n`);
      for (const e of failed) o.out.write(`  ✗ ${e.dest}: ${e.error?.message ?? 'failed'} (${e.error?.code ?? 'ERROR'})\n`);
      end(failed.length > 0 ? 1 : 0);
    });

    client.start();
  });
}
