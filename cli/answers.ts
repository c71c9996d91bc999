/**
 * The shapes of the server's answers that cli/ reads beyond the entry. Written out here because
 * the server declares them beside its routes (server/api/app.ts, server/sources/groups.ts), layers
 * cli/ may not import (only server/protocol/ is shared).
 */
import type { Entry, ErrorInfo, GroupRef } from '../server/protocol/wire';

/** `POST /api/downloads` for one file: 202 `{download}`, 200 `{status:"already_exists",download}`, 409 `{error,download}`. */
export interface AddAnswer {
  download: Entry;
  status?: 'already_exists';
  error?: ErrorInfo;
}

/** A file of a group that was not started, and why. */
export interface Skipped {
  folder: string;
  filename: string;
  error: ErrorInfo;
}

/** `POST /api/downloads` for a Hugging Face repository or folder: 202. */
export interface GroupAnswer {
  group: GroupRef;
  downloads: Entry[];
  skipped?: Skipped[];
}

export const isGroupAnswer = (body: unknown): body is GroupAnswer =>
  typeof body === 'object' && body !== null && 'group' in body && Array.isArray((body as GroupAnswer).downloads);
