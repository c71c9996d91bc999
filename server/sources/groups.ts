/**
 * Downloads started as one group: the files of a Hugging Face folder or repository, the missing
 * models of a workflow. Each file goes through the same intake as a single URL (the same checks,
 * the same duplicate rule); the group is a new entry field, kept in the status file, so a
 * refreshed page regroups them. One file that cannot be started does not stop the others: it is
 * listed in `skipped` with its error. Before the first starts, the files' known sizes must fit on
 * their disks (free-space.ts); a file already completed elsewhere (same sha256) is listed in
 * `found_elsewhere`, or linked there with `link: true` (downloader/known-files.ts).
 */
import { AppError, badRequest } from '../errors';
import type { AddOptions } from '../downloader/downloader';
import type { AddRequest, AddResult, Entry, FoundFile, GroupAnswer, GroupRef, SkippedFile } from '../protocol/wire';
import { newId } from '../store/entry';
import type { HfMetadata } from './hf-repo';

export type Add = (req: AddRequest, options?: AddOptions) => Promise<AddResult>;

export interface GroupResult extends GroupAnswer {
  /** Files not started, each with why (a name the models folder refuses, already downloading…). */
  skipped: SkippedFile[];
  /** Files already under MODELS_DIR at another dest (same sha256): answered, or linked with `link`. */
  found_elsewhere: FoundFile[];
}

/** One file of a group: its request, and what a listing knows of it. */
export interface GroupItem {
  req: AddRequest;
  /** Bytes, when the listing or plan says (shown from the start, and counted against the free space). */
  size?: number;
  /** Hugging Face files kept in git: the blob id the listing gives (checked at the end). */
  gitOid?: string;
}

/**
 * Throws `507 INSUFFICIENT_SPACE` when the files of a group (`what`: its name, for the message) do
 * not fit on their disks (free-space.ts). Called before the first file starts.
 */
export type RoomCheck = (what: string, items: readonly GroupItem[]) => void;

export interface GroupDeps {
  add: Add;
  /** @default no check */
  room?: RoomCheck | undefined;
}

/**
 * Starts every request in one group, one after another (each may ask its server for a name), once
 * the known sizes fit. A file whose sha256 a completed download elsewhere has is listed in
 * `found_elsewhere` (and, linked, in `downloads` too).
 */
export async function startGroup(name: string, items: readonly (AddRequest | GroupItem)[], deps: GroupDeps): Promise<GroupResult> {
  const list: GroupItem[] = items.map((item) => ('req' in item ? item : { req: item }));
  deps.room?.(name, list);
  const group: GroupRef = { id: newId(), name };
  const downloads: Entry[] = [];
  const skipped: GroupResult['skipped'] = [];
  const found: FoundFile[] = [];
  for (const { req, size, gitOid } of list) {
    try {
      const result = await deps.add(req, { group, ...(size !== undefined ? { size } : {}), ...(gitOid ? { gitOid } : {}) });
      if (result.same_as) found.push({ folder: req.folder, filename: req.filename ?? result.download.filename, same_as: result.same_as, linked: result.linked === true });
      if (!result.same_as || result.linked) downloads.push(result.download);
    } catch (err) {
      if (!(err instanceof AppError) || err.status >= 500) throw err;
      skipped.push({ folder: req.folder, filename: req.filename ?? '', error: err.toJSON() });
    }
  }
  return { group, downloads, skipped, found_elsewhere: found };
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
 * `<folder>/<repo name>/<path in repo>`. LFS files are verified by their sha256, files kept in git by
 * their git blob id; the listed sizes must fit on the disk first. Returns undefined
 * for any other URL (a single file goes through intake as before).
 */
export async function intakeRepo(req: AddRequest & { include?: unknown; exclude?: unknown }, hf: HfMetadata, deps: GroupDeps): Promise<GroupResult | undefined> {
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
  if (req.link !== undefined && typeof req.link !== 'boolean') throw badRequest('INVALID_BODY', 'Expected `link` to be true or false');
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
      ...(req.link === true ? { link: true } : {}),
    },
    size: f.size,
    ...(f.gitBlobId ? { gitOid: f.gitBlobId } : {}),
  }));
  return startGroup(name, items, deps);
}
