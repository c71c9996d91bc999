/**
 * HF_ENDPOINT and CIVITAI_ENDPOINT as mirrors: a `https://huggingface.co/…` (`https://civitai.com/…`)
 * URL, from a workflow, the catalog or a user, is fetched from the configured endpoint, same path
 * and query. Pure, so that intake and the downloader can use it too.
 */

export interface MirrorEndpoints {
  /** HF_ENDPOINT, e.g. `https://hf-mirror.com` (a path prefix is kept). */
  hfEndpoint: string;
  /** CIVITAI_ENDPOINT. */
  civitaiEndpoint: string;
}

const HOSTS: ReadonlyArray<{ hosts: readonly string[]; endpoint: keyof MirrorEndpoints }> = [
  { hosts: ['huggingface.co', 'www.huggingface.co'], endpoint: 'hfEndpoint' },
  { hosts: ['civitai.com', 'www.civitai.com'], endpoint: 'civitaiEndpoint' },
];

/** The URL to fetch for `raw`: on a mirrored host, the endpoint plus the same path; any other URL unchanged. */
export function mirrorUrl(raw: string, endpoints: MirrorEndpoints): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return raw;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return raw;
  const match = HOSTS.find((h) => h.hosts.includes(url.hostname.toLowerCase()) && url.port === '');
  if (!match) return raw;
  let base: URL;
  try {
    base = new URL(endpoints[match.endpoint]);
  } catch {
    return raw;
  }
  if (base.origin === url.origin && base.pathname.replace(/\/+$/, '') === '') return raw; // the real host: nothing to do
  const prefix = base.pathname.replace(/\/+$/, '');
  return `${base.origin}${prefix}${url.pathname}${url.search}`;
}
