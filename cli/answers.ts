/**
 * The shapes of the server's answers that cli/ reads beyond the entry: the group answers and the
 * workflow plan, from server/protocol/wire.ts (the one definition the server, the page and the CLI share).
 */
import type { Entry, ErrorInfo, GroupAnswer } from '../server/protocol/wire';

/** `POST /api/downloads` for one file: 202 `{download}`, 200 `{status:"already_exists",download}`, 409 `{error,download}`. */
export interface AddAnswer {
  download: Entry;
  status?: 'already_exists';
  /** The same file (sha256) completed at this other dest: `download` is its entry, unless `linked`. */
  same_as?: string;
  /** A hard link to `same_as` was made at the requested dest (`--link`); `download` is its entry. */
  linked?: boolean;
  error?: ErrorInfo;
}

export type { FoundFile, GroupAnswer, ModelState, Plan, PlannedModel, SkippedFile as Skipped, WorkflowDownloadAnswer as WorkflowDownload } from '../server/protocol/wire';

export const isGroupAnswer = (body: unknown): body is GroupAnswer =>
  typeof body === 'object' && body !== null && 'group' in body && Array.isArray((body as GroupAnswer).downloads);
