import type { Expectations } from '../downloader/source';
import { endpoint, type Source, type SourceProvider } from './types';

export interface HuggingFaceOptions {
  /** `HF_ENDPOINT`. @default 'https://huggingface.co' */
  endpoint: string;
  /** `HF_TOKEN`: sent as `Authorization: Bearer` to the Hugging Face host only, never to its CDN. */
  token?: string;
}

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * Hugging Face: page URLs (`…/<repo>/blob/<rev>/<path>`) become file URLs (`…/resolve/…`), the
 * token goes to the HF host only, and the size and sha256 of LFS files come from the
 * `X-Linked-Size`/`X-Linked-Etag` headers of its first answer (the redirect to the CDN).
 */
export function huggingFace(options: HuggingFaceOptions): SourceProvider {
  const ep = endpoint(options.endpoint);
  const { token } = options;
  const prefix = ep.base.pathname.replace(/\/+$/, '');

  /** Index of the `blob`/`raw`/`resolve` segment: after `<org>/<repo>` or a legacy `<repo>`, past `datasets/` or `spaces/`. */
  const kindIndex = (segs: string[]): number | undefined => {
    const offset = segs[0] === 'datasets' || segs[0] === 'spaces' ? 1 : 0;
    // The namespaced form first: in `org/blob/blob/main/x` the repo is called "blob".
    for (const i of [offset + 2, offset + 1]) {
      if (['blob', 'raw', 'resolve'].includes(segs[i] ?? '') && segs.length >= i + 3) return i;
    }
    return undefined;
  };

  const toFileUrl = (url: URL): { url: URL; page?: string } => {
    const segs = ep.segments(url);
    const i = kindIndex(segs);
    if (i === undefined) return { url };
    const page = `${ep.base.origin}${prefix}/${segs.slice(0, i).join('/')}`;
    if (segs[i] === 'resolve') return { url, page };
    // `blob` is the web page of the file and `raw` would serve an LFS file's pointer, not the file.
    const out = new URL(url);
    out.pathname = `${prefix}/${[...segs.slice(0, i), 'resolve', ...segs.slice(i + 1)].join('/')}`;
    return { url: out, page };
  };

  const expectations = (first: Record<string, string | undefined>): Expectations => {
    const out: Expectations = {};
    const size = first['x-linked-size']?.trim();
    if (size && /^\d+$/.test(size) && Number.isSafeInteger(Number(size))) out.size = Number(size);
    // X-Linked-Etag is the LFS object id, the sha256 of the file. A plain ETag is not: for a small
    // file kept in git it is the git blob sha1, so it is never taken as a digest.
    const etag = first['x-linked-etag']?.trim().replace(/^W\//, '').replace(/"/g, '').toLowerCase();
    if (etag && SHA256.test(etag)) out.sha256 = etag;
    return out;
  };

  return {
    owns: (url) => ep.contains(url),
    resolve(given): Source {
      const { url, page } = toFileUrl(given);
      const where = page ?? 'the model page';
      return {
        url,
        label: 'Hugging Face',
        nameInPath: true,
        // Asked at every hop: the CDN's signed URL must never see the token.
        headersFor: (hop): Record<string, string> => (token && ep.isHost(hop) ? { Authorization: `Bearer ${token}` } : {}),
        inspect: (res) => expectations(res.firstHeaders),
        describeStatus(status, hop) {
          if (!ep.isHost(hop)) return undefined; // the CDN: the generic message says it best
          switch (status) {
            case 401:
              return token
                ? 'Hugging Face answered 401: it did not accept HF_TOKEN (expired or mistyped?), or the repository is private to another account'
                : `Hugging Face answered 401: this repository is gated or private — set HF_TOKEN (and accept its licence on ${where})`;
            case 403:
              return `Hugging Face answered 403: accept the model's licence on ${where}, with the account of HF_TOKEN${token ? '' : ' (HF_TOKEN is not set)'}`;
            case 404:
              return 'Hugging Face answered 404: no such file at this revision (check the repository, revision and file path in the URL)';
            default:
              return undefined;
          }
        },
        describeNonFile: (kind) =>
          kind === 'page' ? `Hugging Face answered with a web page instead of the file: use the file's download link (…/resolve/<revision>/<file>)` : undefined,
      };
    },
  };
}
