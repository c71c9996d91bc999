/**
 * Civitai downloads with what Civitai's API says of them: before one starts, the version's file is
 * looked up (`/api/v1/model-versions/<id>`, or the model's latest version for a page that names
 * none): its name, its size (checked against the free space of its disk) and its SHA256, which
 * the finished file must then match. Without this a Civitai download was verified by nothing.
 * When Civitai's API cannot describe it (down, or it knows no such version), the download goes on as
 * before, unverified, and the log says so: the download URL then says best what is wrong.
 */
import type { Logger } from '../logger';
import type { AddRequest } from '../protocol/wire';
import type { CivitaiMetadata } from './civitai-meta';
import type { RoomCheck } from './groups';

export interface CivitaiPrepared {
  req: AddRequest;
  /** Said to the user: the version was picked for them. */
  note?: string;
}

export interface CivitaiDeps {
  civitai: CivitaiMetadata;
  log: Logger;
  /** The free-space check of groups (free-space.ts), for the one file whose size the API gives. @default none */
  room?: RoomCheck;
}

export async function prepareCivitai(req: AddRequest, deps: CivitaiDeps): Promise<CivitaiPrepared> {
  if (!req || typeof req !== 'object' || typeof req.url !== 'string') return { req };
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return { req };
  }
  const ref = deps.civitai.parse(url);
  if (!ref) return { req };
  let meta;
  try {
    meta = await deps.civitai.resolve(ref, AbortSignal.timeout(20_000));
  } catch (err) {
    // The download URL itself says best why it cannot be had (a version that does not exist, an
    // account needed): intake asks it next, as before.
    deps.log.warn(`Civitai's API did not describe ${url.pathname}: ${(err as Error).message}; downloading without its name, size and SHA256`);
    return { req };
  }
  // A download URL as given stays (it may carry the user's own `?token=`); a page becomes its file's URL.
  const isDownloadUrl = /\/api\/download\/models\/\d+/.test(url.pathname);
  const prepared: AddRequest = {
    ...req,
    url: isDownloadUrl ? req.url : meta.downloadUrl,
    ...(req.filename ? {} : { filename: meta.filename }),
    ...(req.sha256 || !meta.sha256 ? {} : { sha256: meta.sha256 }),
  };
  // Its size against the free space of the disk its folder is on, as for a group: less the bytes
  // already in its `.part` (a resume), less what the downloads under way there have still to write.
  if (meta.size !== undefined) deps.room?.(prepared.filename ?? meta.filename, [{ req: prepared, size: meta.size }]);
  return { req: prepared, ...(meta.note ? { note: meta.note } : {}) };
}
