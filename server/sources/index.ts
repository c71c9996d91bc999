import type { Config } from '../config';
import { civitai } from './civitai';
import { huggingFace } from './huggingface';
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
