/**
 * The plug-in point of sources (Hugging Face, Civitai, plain URLs): what to fetch for a URL a user
 * gave and how to word its failures; and the one GET of a source's URL with its per-host headers.
 */
import type { Agent } from '../net/agent';
import { openStream, type HeadersFor, type OpenedResponse } from '../net/http-client';

/** What a response looked like, for a source to inspect before its bytes are written. */
export interface ResponseInfo {
  status: number;
  /** The URL that answered, after redirects. */
  url: URL;
  headers: Record<string, string | undefined>;
  /** Headers of the first response, before redirects (Hugging Face's X-Linked-* are there). */
  firstHeaders: Record<string, string | undefined>;
}

/** What a source says of the file: verified after the transfer. */
export interface Expectations {
  size?: number;
  sha256?: string;
}

/**
 * How to fetch one URL: the plug-in point for Hugging Face, Civitai and plain URLs. The downloader
 * asks again at every attempt, from the URL the user gave (signed redirect URLs expire).
 */
export interface ResolvedSource {
  /** What to request (a page URL rewritten to its file URL, a token added for its own host). */
  url: URL;
  /** Extra headers per hop; credentials only for their own host. */
  headersFor?: HeadersFor;
  /** Looks at each successful response before any byte is written; may throw an AppError to refuse it. */
  inspect?(res: ResponseInfo): Expectations | undefined;
  /** A message for an HTTP failure, where the source knows better than the generic one. */
  describeStatus?(status: number, url: URL): string | undefined;
  /** A message for a web page or JSON answer served instead of the file, where the source knows why. */
  describeNonFile?(kind: 'page' | 'json', said: string): string | undefined;
}

export type SourceResolver = (url: URL) => ResolvedSource;

export const plainSource: SourceResolver = (url) => ({ url });

/** GET of the source's URL with `headers`, plus its own per-hop ones (credentials only for their own host). */
export function openSource(source: Pick<ResolvedSource, 'url' | 'headersFor'>, headers: Record<string, string>, signal: AbortSignal, agent: Agent): Promise<OpenedResponse> {
  return openStream(source.url, { headers, ...(source.headersFor ? { headersFor: source.headersFor } : {}), signal, agent });
}
