/**
 * Downloads started as one group: the files of a Hugging Face folder or repository, the missing
 * models of a workflow. Each file goes through the same intake as a single URL (the same checks,
 * the same duplicate rule); the group is a new entry field, kept in the status file, so a
 * refreshed page regroups them. One file that cannot be started does not stop the others: it is
 * listed in `skipped` with its error.
 */
import { AppError, badRequest } from '../errors';
import type { AddOptions } from '../downloader/downloader';
import type { AddRequest, AddResult, Entry, GroupAnswer, GroupRef, SkippedFile } from '../protocol/wire';
import { newId } from '../store/entry';
import type { HfMetadata } from './hf-repo';

export type Add = (req: AddRequest, options?: AddOptions) => Promise<AddResult>;

export interface GroupResult extends GroupAnswer {
  /** Files not started, each with why (a name the models folder refuses, already downloading…). */
  skipped: SkippedFile[];
}

/** One file of a group: its request, and its size when the listing knows it (shown from the start). */
export interface GroupItem {
  req: AddRequest;
  size?: number;
}

/** Starts every request in one group, one after another (each may ask its server for a name). */
export async function startGroup(name: string, items: readonly (AddRequest | GroupItem)[], add: Add): Promise<GroupResult> {
  const group: GroupRef = { id: newId(), name };
  const downloads: Entry[] = [];
  const skipped: GroupResult['skipped'] = [];
  for (const item of items) {
    const { req, size } = 'req' in item ? item : { req: item, size: undefined };
    try {
      downloads.push((await add(req, { group, ...(size !== undefined ? { size } : {}) })).download);
    } catch (err) {
      if (!(err instanceof AppError) || err.status >= 500) throw err;
      skipped.push({ folder: req.folder, filename: req.filename ?? '', error: err.toJSON() });
    }
  }
  return { group, downloads, skipped };
}

/** A list of glob patterns from a request body: a string, an array of strings, or absent. */
function patterns(value: unknown, field: string): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length > 100 || !list.every((p) => typeof p === 'string' && p.length > 0 && p.length <= 200)) {
    throw badRequest('INVALID_BODY', `Expected \`${field}\` to be a glob pattern such as "*.safetensors", or a list of at most 100`);
  }
  return list as string[];
}

/**
 * A Hugging Face repository or folder URL (`https://huggingface.co/<org>/<repo>`, `…/tree/<rev>/<path>`):
 * its files listed at the commit the revision names now, and started as one group under
 * `<folder>/<repo name>/<path in repo>`. LFS files are verified by their sha256. Returns undefined
 * for any other URL (a single file goes through intake as before).
 */
export async function intakeRepo(req: AddRequest & { include?: unknown; exclude?: unknown }, hf: HfMetadata, add: Add): Promise<GroupResult | undefined> {
  if (!req || typeof req !== 'object' || typeof req.url !== 'string') return undefined;
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return undefined;
  }
  const ref = hf.parse(url);
  if (!ref) return undefined;
  if (typeof req.folder !== 'string' || req.folder.trim() === '') {
    throw badRequest('INVALID_FOLDER', 'Expected `folder` to be a model folder such as "diffusion_models" for the repository\'s files');
  }
  const include = patterns(req.include, 'include');
  const exclude = patterns(req.exclude, 'exclude');
  const listing = await hf.list(ref, { folder: req.folder, ...(include ? { include } : {}), ...(exclude ? { exclude } : {}) });
  const name = listing.path ? `${listing.repo}/${listing.path}` : listing.repo;
  // Git's own files (`.gitattributes`, `.gitignore`) and anything under a dot folder are not model
  // files, and the models folder refuses names that start with a dot: they are not listed.
  const files = listing.files.filter((f) => !f.path.split('/').some((seg) => seg.startsWith('.')));
  const items = files.map((f) => ({
    req: {
      url: f.url,
      folder: f.folder,
      filename: f.filename,
      ...(f.sha256 ? { sha256: f.sha256 } : {}),
      ...(req.overwrite === true ? { overwrite: true } : {}),
    },
    size: f.size,
  }));
  return startGroup(name, items, add);
}
