/**
 * The shapes of the server's answers that cli/ reads beyond the entry: the group answers and the
 * workflow plan. Written out here because the server declares the plan in server/workflows/plan.ts,
 * a layer cli/ may not import (only server/protocol/ is shared); they follow its PlannedModel and
 * Plan, and the answers of server/api/workflow-routes.ts and server/sources/groups.ts.
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

export type ModelState = 'installed' | 'missing' | 'active' | 'no_source';

export interface PlannedModel {
  name: string;
  folder: string;
  dest: string;
  state: ModelState;
  url: string | null;
  source: 'workflow' | 'catalog' | 'model_list' | null;
  sha256?: string;
  size?: number;
  gated?: string;
  found_at?: string;
  download_id?: string;
  error?: { code: string; message: string };
}

/** `POST /api/workflows/plan`: 200. */
export interface Plan {
  name?: string;
  models: PlannedModel[];
  missing_bytes: number;
}

/** `POST /api/workflows/download`: 202. */
export interface WorkflowDownload extends GroupAnswer {
  models: PlannedModel[];
}

export const isGroupAnswer = (body: unknown): body is GroupAnswer =>
  typeof body === 'object' && body !== null && 'group' in body && Array.isArray((body as GroupAnswer).downloads);
