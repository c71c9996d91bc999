/**
 * Reading the status file: its text (a byte-order mark taken off), what it holds (each entry
 * validated by entry.ts's `parseEntry`, copied ids renewed, entries outside MODELS_DIR dropped), and
 * at start-up what to do with a file that cannot be used (kept aside as `<file>.bad-<time>`, moved or
 * copied). Nothing here writes the status file itself or watches it.
 */
import fs from 'node:fs/promises';
import { newId, parseEntry } from './entry';
import type { Logger } from '../logger';
import type { Entry } from '../protocol/wire';

export interface ReadOptions {
  file: string;
  log: Logger;
  /** Entries whose `dest` this refuses (one that would leave MODELS_DIR) are dropped. */
  isValidDest: (dest: string) => boolean;
}

/** What a status file's text holds: entries, or why it cannot be used at all. */
export type ParsedText =
  | { usable: true; entries: Map<string, Entry>; changes: string[]; droppedSome: boolean }
  | { usable: false; reason: string };

/**
 * The file's text. An editor on Windows may save it with a byte-order mark (Notepad's "UTF-8 with
 * BOM"), or as UTF-16 (PowerShell 5's `Out-File`): JSON.parse refuses both as they come.
 */
export async function readStatusText(file: string): Promise<string> {
  return decodeStatusBytes(await fs.readFile(file));
}

/** A status file's bytes as text: UTF-8 (a byte-order mark dropped) or UTF-16LE with its mark. */
export function decodeStatusBytes(data: Buffer): string {
  if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) return data.subarray(3).toString('utf8');
  if (data[0] === 0xff && data[1] === 0xfe) return data.subarray(2).toString('utf16le');
  return data.toString('utf8');
}

/**
 * The entries a status file's text holds, and what makes the file differ from them (new ids,
 * dropped entries, cleaned URLs: `changes`, empty when nothing does). Unusable when it is empty, not
 * JSON or not an object: never taken for "no downloads" (a non-atomic writer leaves the file empty
 * or half-written for a moment). Dropped entries and new ids are logged here, at start-up and for
 * an edit alike.
 */
export function parseStatusText(text: string, { file, log, isValidDest }: ReadOptions): ParsedText {
  if (text.trim() === '') return { usable: false, reason: 'it is empty' };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { usable: false, reason: `it is not valid JSON (${(err as Error).message})` };
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) return { usable: false, reason: 'it is not an object keyed by destination' };
  const entries = new Map<string, Entry>();
  const dropped: string[] = [];
  const ids = new Set<string>();
  const renamed: string[] = [];
  let urls = 0;
  for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
    const entry = parseEntry(key, value);
    if (typeof entry === 'string') dropped.push(`${key}: ${entry}`);
    else if (!isValidDest(key)) dropped.push(`${key}: not a destination inside the models folder`);
    else {
      // A copied entry (a hand edit) keeps the id of its original: commands and the page key
      // downloads by id, so one of the two would be out of reach.
      if (ids.has(entry.id)) {
        entry.id = newId();
        renamed.push(key);
      }
      ids.add(entry.id);
      // A token or signature removed (or the URL put in its normal form): never logged itself.
      if (entry.url !== (value as { url: string }).url) urls++;
      entries.set(key, entry);
    }
  }
  const changes: string[] = [];
  if (renamed.length > 0) {
    log.warn(`gave ${renamed.length} entr${renamed.length === 1 ? 'y' : 'ies'} of ${file} a new id (another entry had the same): ${listed(renamed, ', ')}`);
    changes.push(`${renamed.length} new id${renamed.length === 1 ? '' : 's'}`);
  }
  if (dropped.length > 0) {
    log.warn(`dropped ${dropped.length} unusable entr${dropped.length === 1 ? 'y' : 'ies'} of ${file}: ${listed(dropped, '; ')}`);
    changes.push(`${dropped.length} unusable entr${dropped.length === 1 ? 'y' : 'ies'} dropped`);
  }
  if (urls > 0) changes.push(`${urls} URL${urls === 1 ? '' : 's'} without credentials or in normal form`);
  return { usable: true, entries, changes, droppedSome: dropped.length > 0 };
}

/** The file as read at start-up: its text (undefined when there is none), and what to serve from it. */
export interface StartupRead {
  text: string | undefined;
  entries: Map<string, Entry>;
  /** What makes the file differ from `entries`: when not empty, it must be rewritten at once. */
  changes: string[];
}

/**
 * Reads the file at start-up. A file that cannot be used is kept aside and logged (the server starts
 * with no downloads); a file with unusable entries is copied aside, whole, for a person to look at.
 * Throws only for a file that exists and cannot be read (EACCES), never for its content.
 */
export async function readAtStartup(options: ReadOptions): Promise<StartupRead> {
  const { file, log } = options;
  let text: string | undefined;
  try {
    text = await readStatusText(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const none = { text, entries: new Map<string, Entry>(), changes: [] };
  if (text === undefined) return none;
  if (text.trim() === '') {
    // Nothing to keep aside (`touch` makes one for a bind mount), but worth a line: it may also be
    // what a crash of another writer left.
    log.warn(`the status file ${file} is empty; starting with no downloads`);
    return none;
  }
  const parsed = parseStatusText(text, options);
  if (!parsed.usable) {
    // Moved aside: there is no file left to disagree with. Copied aside (it could not be moved):
    // the bad file is still in place, so it is replaced at once by what is served.
    return (await keepAside(options, parsed.reason)) === 'copied' ? { ...none, changes: ['its unusable content was kept aside'] } : none;
  }
  if (parsed.droppedSome) await copyAside(options, 'it had unusable entries');
  return { text, entries: parsed.entries, changes: parsed.changes };
}

const asidePath = (file: string): string => `${file}.bad-${new Date().toISOString().replace(/[:.]/g, '-')}`;

/**
 * Moves an unusable file out of the way. Never throws: a file that cannot be moved (locked on
 * Windows, a bind-mounted file: EBUSY) is copied instead, and one that cannot be copied either is
 * only logged; the server starts in any case.
 */
async function keepAside(options: ReadOptions, reason: string): Promise<'moved' | 'copied' | 'failed'> {
  const { file, log } = options;
  const aside = asidePath(file);
  try {
    await fs.rename(file, aside);
    log.warn(`the status file ${file} could not be used (${reason}); kept it as ${aside} and started with an empty one`);
    return 'moved';
  } catch (err) {
    log.warn(`the status file ${file} could not be used (${reason}) nor moved aside (${(err as Error).message})`);
  }
  return (await copyAside(options, `${reason}; it will be overwritten`)) ? 'copied' : 'failed';
}

async function copyAside({ file, log }: ReadOptions, reason: string): Promise<boolean> {
  const aside = asidePath(file);
  try {
    await fs.copyFile(file, aside);
    log.warn(`kept a copy of the status file as ${aside} (${reason})`);
    return true;
  } catch (err) {
    log.error(`could not keep a copy of the status file ${file} as ${aside} (${reason}): ${(err as Error).message}`);
    return false;
  }
}

/** The first ten items, and how many more there are: a log line that stays a line. */
const listed = (items: string[], separator: string): string => items.slice(0, 10).join(separator) + (items.length > 10 ? `${separator}and ${items.length - 10} more` : '');
