/**
 * The Downloader: the queue (queue.ts, which it extends: jobs, start, close, which download
 * transfers when) and the commands. add, pause, resume, cancel, retry, remove and clear change
 * entries and start or stop jobs; adopt takes over a download another server of the fleet left.
 * All state lives in the store's entries; this class only changes them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createEntry, nowSeconds, patchEntry } from '../store/entry';
import { AppError, badRequest, conflict, errnoOf, notFound } from '../errors';
import { filenameFromUrl, ownFileAt, resolveDest } from '../disk/paths';
import type { AddRequest, AddResult, Entry, GroupRef } from '../protocol/wire';
import { commandFits, isActive, isFinished, type Command } from '../protocol/status';
import { parseSourceUrl, redactUrl } from '../net/url-policy';
import { findSameFile, offerSameFile } from './known-files';
import { DownloadQueue } from './queue';

export type { DownloaderOptions } from './queue';

const SHA256 = /^[0-9a-fA-F]{64}$/;

/** What the server, not the request body, decides about a new download. */
export interface AddOptions {
  /** The workflow or Hugging Face folder it is started with (kept in its entry). */
  group?: GroupRef;
  /** The size a listing gave (Hugging Face): shown before the transfer says it. */
  size?: number;
  /** A Hugging Face file kept in git: its blob id from the listing, checked at the end (verify.ts). */
  gitOid?: string;
}

/** The queue and the commands of every download (see the top of this file). */
export class Downloader extends DownloadQueue {
  add(req: AddRequest, options: AddOptions = {}): AddResult {
    if (this.state === 'closing' || this.state === 'closed') throw new AppError('SHUTTING_DOWN', 'The server is shutting down', { status: 503 });
    if (!req || typeof req !== 'object') throw badRequest('INVALID_BODY', 'Expected a JSON object with `url` and `folder`');
    const source = parseSourceUrl(req.url);
    if (req.sha256 !== undefined && (typeof req.sha256 !== 'string' || !SHA256.test(req.sha256))) {
      throw badRequest('INVALID_SHA256', 'Expected `sha256` to be 64 hexadecimal digits');
    }
    if (req.overwrite !== undefined && typeof req.overwrite !== 'boolean') throw badRequest('INVALID_BODY', 'Expected `overwrite` to be true or false');
    if (req.link !== undefined && typeof req.link !== 'boolean') throw badRequest('INVALID_BODY', 'Expected `link` to be true or false');
    if (req.filename !== undefined && typeof req.filename !== 'string') throw badRequest('INVALID_FILENAME', 'Expected `filename` to be a string');
    const filename = req.filename || filenameFromUrl(source);
    if (!filename) throw badRequest('FILENAME_REQUIRED', 'The URL does not end in a file name; give `filename`');
    const d = resolveDest(this.o.modelsDir, req.folder, filename);
    const own = ownFileAt(d.abs, this.protectedFiles);
    if (own) throw badRequest('RESERVED_PATH', `${d.dest} is where the server keeps ${own}; choose another folder or filename`);

    // From here to store.put nothing awaits: two requests in the same tick cannot both pass.
    const existing = this.store.get(d.dest);
    if (existing && (!isFinished(existing.status) || this.jobs.has(d.dest))) {
      throw Object.assign(conflict('ALREADY_ACTIVE', `${d.dest} is already ${existing.status}`), { download: existing });
    }
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(d.abs, { throwIfNoEntry: false });
    } catch (err) {
      if (errnoOf(err) !== 'ENOTDIR') throw err;
    }
    // Node 20 throws ENOTDIR here, Node 24 answers "nothing there": look for the file in the path.
    if (!stat && fileInPath(d.abs, this.o.modelsDir)) throw conflict('ENOTDIR', `A file is where a folder of ${d.dest} should be; choose another folder`);
    if (stat?.isDirectory()) throw conflict('DEST_IS_DIRECTORY', `${d.dest} is a folder; choose another filename`);
    if (stat && !req.overwrite) {
      const download =
        existing?.status === 'completed'
          ? existing
          : createEntry({ ...d, url: redactUrl(source), status: 'completed', file_size: stat.size, downloaded: stat.size });
      return { outcome: 'already_exists', download };
    }
    // The same file (by sha256) completed at another dest: offered instead of a second download.
    const same = req.sha256 && !req.overwrite ? findSameFile(this.store.all(), this.o.modelsDir, req.sha256, d.dest) : undefined;
    if (same) return offerSameFile(same, { dest: d, url: redactUrl(source), link: req.link === true, ...(options.group ? { group: options.group } : {}) }, { store: this.store, log: this.log });
    const entry = createEntry({ ...d, url: redactUrl(source), ...(req.sha256 ? { sha256: req.sha256 } : {}), ...(options.gitOid ? { git_oid: options.gitOid } : {}), ...(options.group ? { group: options.group } : {}), ...(options.size !== undefined ? { file_size: options.size } : {}) });
    this.sources.set(d.dest, source);
    this.store.put(entry);
    this.enqueue(d.dest);
    return { outcome: 'started', download: entry };
  }

  pause(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('pause', e.status)) throw this.wrongState(e, 'pause');
    const next = this.store.put(this.transition(e, 'paused', { speed: 0, eta: null }));
    this.stopJob(e.dest, 'pause');
    return next;
  }

  resume(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('resume', e.status)) throw this.wrongState(e, 'resume');
    const next = this.store.put(this.transition(e, 'queued', { error: undefined }));
    this.enqueue(e.dest);
    return next;
  }

  cancel(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('cancel', e.status)) throw this.wrongState(e, 'cancel');
    const next = this.store.put(this.transition(e, 'cancelled', { speed: 0, eta: null, completion_time: nowSeconds() }));
    if (!this.stopJob(e.dest, 'cancel')) void this.discardPart(e.dest);
    return next;
  }

  retry(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('retry', e.status)) throw this.wrongState(e, 'retry');
    const next = this.store.put(this.transition(e, 'queued', { error: undefined, speed: 0, eta: null }));
    this.enqueue(e.dest);
    return next;
  }

  /**
   * Fleet mode: takes over a download another server left (its entry as that server published it,
   * validated; the fleet holds its destination). Active, it is queued and resumes from the `.part`;
   * paused, it stays paused.
   */
  adopt(entry: Entry): Entry {
    if (this.state === 'closing' || this.state === 'closed') throw new AppError('SHUTTING_DOWN', 'The server is shutting down', { status: 503 });
    const active = isActive(entry.status);
    const e = this.store.put(patchEntry(entry, { status: active ? 'queued' : entry.status, speed: 0, eta: null }));
    if (active) this.enqueue(e.dest);
    return e;
  }

  /** Forgets a finished download (see forget in queue.ts). */
  remove(id: string): Entry {
    const e = this.find(id);
    if (!commandFits('remove', e.status) || this.jobs.has(e.dest)) {
      throw Object.assign(conflict('ACTIVE', `${e.dest} is ${e.status}; cancel it first`), { download: e });
    }
    this.forget(e);
    return e;
  }

  /** Drops every completed, failed and cancelled entry; returns how many. */
  clearCompleted(): number {
    let n = 0;
    for (const e of this.store.all()) {
      if (isFinished(e.status) && !this.jobs.has(e.dest)) {
        this.forget(e);
        n++;
      }
    }
    return n;
  }

  private find(id: unknown): Entry {
    const e = typeof id === 'string' ? this.store.getById(id) : undefined;
    if (!e) throw notFound('NOT_FOUND', `No download with id \`${String(id)}\``);
    return e;
  }

  private wrongState(e: Entry, command: Command): AppError {
    return Object.assign(conflict('INVALID_STATE', `Cannot ${command} ${e.dest}: it is ${e.status}`), { download: e });
  }
}

/** Whether the nearest existing folder of `abs`'s path (up to `root`) is a file instead. */
function fileInPath(abs: string, root: string): boolean {
  for (let dir = path.dirname(abs); ; dir = path.dirname(dir)) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(dir, { throwIfNoEntry: false });
    } catch (err) {
      if (errnoOf(err) !== 'ENOTDIR') throw err;
    }
    if (st) return !st.isDirectory();
    if (dir === root || dir === path.dirname(dir)) return false;
  }
}
