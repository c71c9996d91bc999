import type { ResolvedSource } from '../downloader/source';

/** What intake and the downloader know of one URL a user gave: how to fetch it, and how to talk about it. */
export interface Source extends ResolvedSource {
  /** Who serves it, for messages: `Hugging Face`, `Civitai`, or undefined for any other host. */
  label?: string;
  /**
   * Whether the last segment of `url`'s path is the file's name. When not (Civitai's
   * `/api/download/models/<id>`), intake asks the server for its `Content-Disposition` first.
   */
  nameInPath: boolean;
}

/** One model host: claims its URLs by host, refuses the ones that cannot name a file, resolves the rest. */
export interface SourceProvider {
  owns(url: URL): boolean;
  /** Throws a 400 AppError for a URL of this host that cannot be downloaded as given (said what to paste instead). */
  check?(url: URL): void;
  /** Never throws: the downloader asks again at every attempt, long after intake checked the URL. */
  resolve(url: URL): Source;
}

/** A base URL (`HF_ENDPOINT`, `CIVITAI_ENDPOINT`) and the test for URLs under it. */
export interface Endpoint {
  base: URL;
  /** Same scheme, host and port: where this host's credentials may go. */
  isHost(url: URL): boolean;
  /** On this host and under the base path: a URL this source handles. */
  contains(url: URL): boolean;
  /** The URL's path below the base path, split into decoded-as-given segments. */
  segments(url: URL): string[];
}

export function endpoint(raw: string): Endpoint {
  const base = new URL(raw);
  const prefix = base.pathname.replace(/\/+$/, '');
  const sameHost = (url: URL): boolean => url.protocol === base.protocol && url.host === base.host;
  return {
    base,
    isHost: sameHost,
    contains: (url) => sameHost(url) && (prefix === '' || url.pathname === prefix || url.pathname.startsWith(`${prefix}/`)),
    segments: (url) => url.pathname.slice(prefix.length).split('/').filter(Boolean),
  };
}
