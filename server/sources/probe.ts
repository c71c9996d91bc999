/**
 * Asks a source about a URL without downloading it: its size, and whether it needs an account or
 * a licence. One GET of the first byte (servers that ignore Range get their body dropped), through
 * the downloader's own connections, with the source's per-host credentials and the same per-hop
 * address guard as a transfer: workflow links come from files users did not write.
 */
import { openSource } from '../downloader/source';
import type { Agent } from '../net/agent';
import { parseSourceUrl } from '../net/url-policy';
import type { Sources } from '.';

export interface ProbeAnswer {
  size?: number;
  /** Set when the URL needs an account or a licence: what to do, in words. */
  gated?: string;
}

/** `Content-Range: bytes 0-0/12345` → 12345; a plain 200 → its Content-Length. */
function sizeOf(status: number, headers: Record<string, string | undefined>): number | undefined {
  const total = /\/(\d+)\s*$/.exec(headers['content-range'] ?? '')?.[1];
  if (status === 206 && total) return Number(total);
  const linked = headers['x-linked-size'];
  if (linked && /^\d+$/.test(linked)) return Number(linked);
  if (status === 200 && headers['content-length'] && /^\d+$/.test(headers['content-length'])) return Number(headers['content-length']);
  return undefined;
}

export function createProbe(deps: { sources: Sources; agent: Agent; timeoutMs?: number }): (url: string) => Promise<ProbeAnswer> {
  return async (raw) => {
    let url: URL;
    try {
      url = parseSourceUrl(raw);
    } catch {
      return {};
    }
    const source = deps.sources.resolve(url);
    const signal = AbortSignal.timeout(deps.timeoutMs ?? 10_000);
    try {
      const res = await openSource(source, { Range: 'bytes=0-0' }, signal, deps.agent);
      try {
        if (res.status === 401 || res.status === 403) {
          return { gated: source.describeStatus?.(res.status, res.url) ?? `${res.url.host} answered ${res.status}: it needs an account or an accepted licence` };
        }
        if (res.status >= 400) return {};
        const size = sizeOf(res.status, res.headers as Record<string, string | undefined>);
        return size === undefined ? {} : { size };
      } finally {
        res.body.destroy();
      }
    } catch {
      return {}; // unreachable, refused, too slow: the plan says "size unknown"
    }
  };
}
