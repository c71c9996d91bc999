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

export interface TrackOptions extends WatchOptions {
  /**
   * The downloads to follow, as the server answered when it started them: only these are shown,
   * and tracking ends when none of them is active. Without it, every download that is active or
   * becomes active is followed until no download is.
   */
  follow?: readonly Entry[];
  /** The total line's label on a terminal (a group's name). */
  label?: string;
}

export interface Tracked {
  /** The last state of each followed download, in the order they were first seen. */
  entries: Entry[];
  /** Ids of followed downloads the server stopped listing before they ended (an edit of its status file). */
  vanished: Set<string>;
}

/** `ws://…/ws` for a server URL, keeping a reverse-proxy path prefix. */
export function wsUrl(server: string): string {
  const url = new URL('ws', server);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

const isActive = (e: Entry): boolean => isActiveStatus(e.status);

/**
 * Live bars for downloads until the ones followed have ended (see TrackOptions.follow).
 * The same LiveClient as the page: snapshot first, seq-ordered updates, reconnection after a drop
 * (a restarting server is waited for), polling when WebSockets cannot get through. Rejects with a
 * CliError (exit code 2) when the server cannot be reached, wants a token, or is lost for good.
 */
export function track(o: TrackOptions): Promise<Tracked> {
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
  const render = createRenderer(o.out, o.label ? { label: o.label } : {});
  const following = o.follow !== undefined;
  const watched = new Map<string, Entry>((o.follow ?? []).map((e) => [e.id, e]));
  const vanished = new Set<string>();
  let everConnected = false;

  return new Promise<Tracked>((resolve, reject) => {
    let ended = false;
    const end = (result: Tracked | CliError): void => {
      if (ended) return;
      ended = true;
      client.close();
      if (result instanceof CliError) reject(result);
      else resolve(result);
    };

    client.on('state', (info) => {
      if (info.state === 'live' || info.state === 'polling') everConnected = true;
      if (info.state === 'unauthorized') end(unauthorized(o.server));
      // Never connected: the server is not there. Once connected, a drop is waited out (a restart).
      else if (!everConnected && info.failures >= 2) end(new CliError(`Cannot reach ${o.server}. Is the server running (npm start)? Give its address with --server.`, 'unreachable'));
      else if (info.state === 'offline') end(new CliError(`Lost ${o.server}: it did not come back after ${info.failures} attempts`, 'unreachable'));
    });

    // Every change event comes with the client's whole, current state (a snapshot or a poll came first).
    client.on('change', () => {
      if (!following) for (const e of client.downloads.values()) if (isActive(e) && !watched.has(e.id)) watched.set(e.id, e);
      for (const [id, last] of watched) {
        const e = client.downloads.get(id);
        if (e) {
          watched.set(id, e);
          vanished.delete(id);
        } else if (isActive(last)) vanished.add(id); // a removed one that had ended keeps its last state
      }
      const shown = [...watched.values()];
      const running = following ? shown.some((e) => isActive(e) && !vanished.has(e.id)) : [...client.downloads.values()].some(isActive);
      if (running) {
        render.draw(shown);
        return;
      }
      render.finish(shown);
      end({ entries: shown, vanished });
    });

    if (watched.size > 0) render.draw([...watched.values()]);
    client.start();
  });
}

/**
 * `Done: 2 completed, 1 failed.` and the reason of each failure; `strict` (a command that waits for
 * these downloads to complete) also names the cancelled and paused ones.
 */
export function summary(entries: readonly Entry[], vanished: ReadonlySet<string> = new Set(), options: { strict?: boolean } = {}): string {
  const count = (s: Entry['status']): number => entries.filter((e) => e.status === s && !vanished.has(e.id)).length;
  const parts = [
    `${count('completed')} completed`,
    ...(count('error') ? [`${count('error')} failed`] : []),
    ...(count('cancelled') ? [`${count('cancelled')} cancelled`] : []),
    ...(count('paused') ? [`${count('paused')} paused`] : []),
    ...(vanished.size ? [`${vanished.size} no longer listed`] : []),
  ];
  let text = `\nDone: ${parts.join(', ')}.\n`;
  for (const e of entries) {
    if (vanished.has(e.id)) text += `  ✗ ${e.dest}: the server no longer lists it (removed from its status file?)\n`;
    else if (e.status === 'error') text += `  ✗ ${e.dest}: ${e.error?.message ?? 'failed'} (${e.error?.code ?? 'ERROR'})\n`;
    else if (options.strict && e.status === 'cancelled') text += `  ✗ ${e.dest}: cancelled\n`;
    else if (options.strict && e.status === 'paused') text += `  ✗ ${e.dest}: paused; resume it (the page, or POST /api/downloads/${e.id}/resume) to finish it\n`;
  }
  return text;
}

/**
 * `watch`: live bars for every download that is active, or becomes active while watching, until
 * none is. Resolves with the exit code: 0, or 1 when one of the watched downloads ended in `error`.
 */
export async function watch(o: WatchOptions): Promise<number> {
  const { entries, vanished } = await track(o);
  if (entries.length === 0) {
    o.out.write('No active downloads.\n');
    return 0;
  }
  o.out.write(summary(entries, vanished));
  return entries.some((e) => e.status === 'error') ? 1 : 0;
}
