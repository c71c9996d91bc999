import type { Config } from '../config';
import { civitai } from './civitai';
import { civitaiMetadata, type CivitaiMetadata } from './civitai-meta';
import { hfMetadata, type HfMetadata } from './hf-repo';
import { huggingFace } from './huggingface';
import { reachOf, type ReachOptions } from './meta/api-client';
import type { Source, SourceProvider } from './types';

export type { Source, SourceProvider } from './types';

/** The model hosts the downloader knows, picked by the host of a URL; any other URL is fetched as it is. */
export interface Sources {
  /** What to fetch for a URL a user gave, and how. Never throws; assignable to the downloader's `resolveSource`. */
  resolve(url: URL): Source;
  /** Throws a 400 AppError for a URL its host cannot serve a file for as given (intake calls it). */
  check(url: URL): void;
}

export function createSources(config: Pick<Config, 'hfEndpoint' | 'hfToken' | 'civitaiEndpoint' | 'civitaiToken'>): Sources {
  const providers: SourceProvider[] = [
    huggingFace({ endpoint: config.hfEndpoint, ...(config.hfToken ? { token: config.hfToken } : {}) }),
    civitai({ endpoint: config.civitaiEndpoint, ...(config.civitaiToken ? { token: config.civitaiToken } : {}) }),
  ];
  const find = (url: URL): SourceProvider | undefined => providers.find((p) => p.owns(url));
  return {
    resolve: (url) => find(url)?.resolve(url) ?? { url, nameInPath: true },
    check: (url) => find(url)?.check?.(url),
  };
}

export type { HfMetadata, HfRepoRef, HfRepoFile, HfRepoListing, HfListOptions } from './hf-repo';
export type { CivitaiMetadata, CivitaiRef, CivitaiFileMeta } from './civitai-meta';
export type { Agents } from './meta/api-client';

/** What the model hosts' metadata APIs say of a URL: the files of a Hugging Face repository or folder, the file of a Civitai link. */
export interface SourceMetadata {
  hf: HfMetadata;
  civitai: CivitaiMetadata;
}

/**
 * The metadata clients for the configured endpoints, tokens and proxies (HTTPS_PROXY, HTTP_PROXY,
 * NO_PROXY: the same rules as downloads). `options` reach the hosts otherwise (a test's agents, its CA).
 */
export function createSourceMetadata(
  config: Pick<Config, 'hfEndpoint' | 'hfToken' | 'civitaiEndpoint' | 'civitaiToken'> & Partial<Pick<Config, 'proxy'>>,
  options: Pick<ReachOptions, 'agent' | 'tls'> = {},
): SourceMetadata {
  const reach = reachOf({ ...options, ...(config.proxy ? { proxy: config.proxy } : {}) });
  return {
    hf: hfMetadata({ endpoint: config.hfEndpoint, ...(config.hfToken ? { token: config.hfToken } : {}), ...reach }),
    civitai: civitaiMetadata({ endpoint: config.civitaiEndpoint, ...(config.civitaiToken ? { token: config.civitaiToken } : {}), ...reach }),
  };
}
