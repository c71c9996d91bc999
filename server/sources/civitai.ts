import { badRequest } from '../errors';
import { endpoint, type Source, type SourceProvider } from './types';

export interface CivitaiOptions {
  /** `CIVITAI_ENDPOINT`. @default 'https://civitai.com' */
  endpoint: string;
  /** `CIVITAI_TOKEN`: the `token` query parameter on the Civitai host only. */
  token?: string;
}

const KEY_HINT = 'an API key from civitai.com/user/account';

/**
 * Civitai: `…/api/download/models/<versionId>` as it is, model pages with `?modelVersionId=`
 * rewritten to it. The token goes in the query, never in an Authorization header: Civitai answers
 * with a redirect to signed storage URLs, and those refuse (400) any request that carries one.
 * The file's name is only in the `Content-Disposition` of the storage's answer.
 */
export function civitai(options: CivitaiOptions): SourceProvider {
  const ep = endpoint(options.endpoint);
  const { token } = options;
  const prefix = ep.base.pathname.replace(/\/+$/, '');

  const isPage = (segs: string[]): boolean => segs[0] === 'models';
  const versionOf = (url: URL, segs: string[]): string | undefined => {
    if (segs[0] === 'api' && segs[1] === 'download' && segs[2] === 'models' && /^\d+$/.test(segs[3] ?? '')) return segs[3];
    const v = url.searchParams.get('modelVersionId');
    return isPage(segs) && v && /^\d+$/.test(v) ? v : undefined;
  };

  return {
    owns: (url) => ep.contains(url),
    check(url) {
      const segs = ep.segments(url);
      if (isPage(segs) && !versionOf(url, segs)) {
        throw badRequest(
          'CIVITAI_VERSION_REQUIRED',
          'This Civitai model page does not say which version to download: select the version (its URL then has ?modelVersionId=…) or copy the link of its Download button',
        );
      }
    },
    resolve(given): Source {
      const segs = ep.segments(given);
      const version = versionOf(given, segs);
      const url = isPage(segs) && version ? new URL(`${prefix}/api/download/models/${version}`, ep.base.origin) : new URL(given);
      // A token the user put in the URL wins; the stored URL never keeps either (redactUrl drops `token`).
      if (token && !url.searchParams.has('token')) url.searchParams.set('token', token);
      const tokenHint = token ? 'CIVITAI_TOKEN was not accepted (create a new one?), or the model is in early access' : `this model needs a Civitai account — set CIVITAI_TOKEN to ${KEY_HINT}`;
      return {
        url,
        label: 'Civitai',
        nameInPath: false,
        describeStatus(status, hop) {
          if (!ep.isHost(hop)) {
            // Civitai's storage: its signed link is made for one short while.
            return status === 400 || status === 401 || status === 403
              ? `${hop.host} (Civitai's file storage) answered ${status}: the signed link was refused, perhaps expired; press retry for a fresh one`
              : undefined;
          }
          switch (status) {
            case 401:
              return `Civitai answered 401: ${tokenHint}`;
            case 403:
              return `Civitai answered 403: this model is not available to ${token ? 'the account of CIVITAI_TOKEN' : 'anonymous downloads (set CIVITAI_TOKEN)'} — early access, or its creator restricted it`;
            case 404:
              return 'Civitai answered 404: no model version with this id (check the modelVersionId in the URL)';
            default:
              return undefined;
          }
        },
        describeNonFile: (kind, said) =>
          kind === 'page'
            ? `Civitai answered with a web page${said ? ` (${said})` : ''} instead of the file, which is its login page: ${tokenHint}`
            : `Civitai answered with an error instead of the file${said ? ` (${said})` : ''}: ${tokenHint}`,
      };
    },
  };
}
