/**
 * The wire protocol: one source of truth for the server, the page and bots.
 * Types only: the browser client imports them with `import type`. What has runtime code (the state
 * machine, the error registry) is in its own module beside this one.
 * Described for users in docs/reference.md ("The download entry", "WebSocket /ws").
 */

import type { DownloadStatus } from './status.js';
import type { ErrorCode } from './error-codes.js';

// The statuses, the state machine and the commands live in status.ts; the codes in error-codes.ts.
export type { DownloadStatus } from './status.js';
export type { ErrorCode } from './error-codes.js';

export interface ErrorInfo {
  /** Stable machine code, e.g. `HTTP_401`, `STALE`, `ENOSPC`, `SHA256_MISMATCH` (see error-codes.ts). */
  code: ErrorCode;
  /** What happened and, where it helps, what to do. */
  message: string;
}

/**
 * Downloads started together: the models of one workflow, the files of one Hugging Face folder or
 * repo. Kept in the status file, so a refreshed page regroups them.
 */
export interface GroupRef {
  /** Up to 64 of [A-Za-z0-9_-]. */
  id: string;
  /** What the user would call it: the workflow's name, `org/repo`. */
  name: string;
}

/** One download, keyed by `dest`. The same object in the status file, the API and the WebSocket. */
export interface Entry {
  id: string;
  /** Destination relative to MODELS_DIR, with `/` separators, e.g. `loras/foo.safetensors`. */
  dest: string;
  folder: string;
  filename: string;
  /** Source URL with any credential removed. */
  url: string;
  status: DownloadStatus;
  /** 0–100 */
  progress: number;
  /** Bytes on disk for this destination. */
  downloaded: number;
  file_size: number | null;
  /** Bytes/s, smoothed over the last seconds; 0 when not transferring. */
  speed: number;
  /** Seconds left; null while unknown. */
  eta: number | null;
  start_time: number;
  timestamp: number;
  completion_time?: number;
  error?: ErrorInfo;
  sha256?: string;
  /**
   * Files kept in git on Hugging Face (not LFS): the blob id its listing gives, sha1 of
   * `blob <size>\0` followed by the bytes. The finished file must match it (`GIT_OID_MISMATCH`).
   */
  git_oid?: string;
  attempts: number;
  /** Set when started as part of a workflow or a Hugging Face folder/repo. */
  group?: GroupRef;
  /**
   * Fleet mode (`FLEET_DIR`): the name of the server that owns the download, this one's own
   * included. Never in the status file. Absent on a lone server.
   */
  instance?: string;
  /**
   * Fleet mode: true when that server has not been heard from for FLEET_STALE_SECONDS (stopped,
   * killed or cut off): the entry is its last word, not live. Absent otherwise.
   */
  instance_stale?: boolean;
}

/** `GET /status` adds the seed's display fields to each entry. */
export interface StatusView extends Entry {
  file_size_mb: number | null;
  downloaded_mb: number;
  speed_mb: number;
  eta_minutes: number | null;
}

// ---- WebSocket: server → client -------------------------------------------------------------

export interface SnapshotMessage {
  type: 'snapshot';
  seq: number;
  downloads: Entry[];
}
export interface UpdateMessage {
  type: 'update';
  seq: number;
  download: Entry;
}
export interface RemovedMessage {
  type: 'removed';
  seq: number;
  id: string;
  dest: string;
}
export interface AckMessage {
  type: 'ack';
  request_id: string | null;
  /** For `start`: whether a transfer began or the file was already there. */
  status?: 'started' | 'already_exists';
  download?: Entry;
  /** For `start`: as `AddResult.same_as`. */
  same_as?: string;
  /** For `start`: as `AddResult.linked`. */
  linked?: boolean;
  removed_count?: number;
  /** Fleet mode: the command was handed to the server that owns the download (its name). */
  forwarded_to?: string;
}
export interface ErrorMessage {
  type: 'error';
  request_id: string | null;
  error: ErrorInfo;
}
export type ServerMessage = SnapshotMessage | UpdateMessage | RemovedMessage | AckMessage | ErrorMessage;

// ---- WebSocket: client → server -------------------------------------------------------------

export interface StartCommand {
  type: 'start';
  request_id?: string;
  url: string;
  folder: string;
  filename?: string;
  sha256?: string;
  overwrite?: boolean;
  link?: boolean;
}
export interface IdCommand {
  type: 'pause' | 'resume' | 'cancel' | 'retry';
  request_id?: string;
  id: string;
}
export interface ClearCompletedCommand {
  type: 'clear_completed';
  request_id?: string;
}
export type ClientCommand = StartCommand | IdCommand | ClearCompletedCommand;

// ---- HTTP ----------------------------------------------------------------------------------

/** Body of `POST /api/downloads` (and the `start` command). */
export interface AddRequest {
  url: string;
  folder: string;
  filename?: string;
  sha256?: string;
  /** Fetch the file even when it is at `dest`, or a file with the same sha256 is elsewhere. */
  overwrite?: boolean;
  /**
   * When a completed download with the same sha256 is elsewhere under MODELS_DIR: put a hard link
   * to it at `dest` (same file system only) instead of answering where it is.
   */
  link?: boolean;
}
export interface AddResult {
  outcome: 'started' | 'already_exists';
  download: Entry;
  /** Something the user should know about what was started (Civitai: which version was picked). */
  note?: string;
  /**
   * `already_exists` because a completed download with the same sha256 is at another `dest`:
   * that `dest`. Without `linked`, `download` is that download's entry and nothing is at the
   * requested `dest`.
   */
  same_as?: string;
  /** With `link: true`: a hard link to `same_as` was made at the requested `dest`; `download` is its new `completed` entry. */
  linked?: boolean;
}

// ---- Groups and workflows ---------------------------------------------------------------------

/** A file of a group that was not started, and why. */
export interface SkippedFile {
  folder: string;
  filename: string;
  error: ErrorInfo;
}

/** A file of a group that a completed download with the same sha256 already is, at another `dest`. */
export interface FoundFile {
  folder: string;
  filename: string;
  /** Where the file with the same sha256 is (relative to MODELS_DIR). */
  same_as: string;
  /** A hard link to it was made at `<folder>/<filename>` (`link: true`); its `completed` entry is in `downloads`. */
  linked: boolean;
}

/** `POST /api/downloads` for a Hugging Face folder or repository: 202. */
export interface GroupAnswer {
  group: GroupRef;
  downloads: Entry[];
  skipped?: SkippedFile[];
  /** Files not fetched because the same file (by sha256) is already elsewhere under MODELS_DIR. */
  found_elsewhere?: FoundFile[];
}

/** `POST /api/groups/:id/<command>`: the downloads the command changed (or handed on), and those it left, with why. */
export interface GroupCommandAnswer {
  group: GroupRef;
  downloads: Entry[];
  /** The command does not fit their state (a completed file is not paused), or it was refused (`error`). */
  left: Array<{ id: string; dest: string; status: DownloadStatus; error?: ErrorInfo }>;
}

/** A node of a workflow that uses a model (`"83:28"` inside a subgraph, as the API format names it). */
export interface WorkflowNodeRef {
  id: number | string;
  type: string;
}

export type ModelState = 'installed' | 'missing' | 'active' | 'no_source';
export type ModelSource = 'workflow' | 'catalog' | 'model_list';

export interface PlannedModel {
  /** As the workflow names it, relative to the folder: `SDXL/x.safetensors`. */
  name: string;
  folder: string;
  /** `<folder>/<name>`, relative to MODELS_DIR: where a download puts it (the status file's key). */
  dest: string;
  state: ModelState;
  /** What a download fetches (mirrors applied, credentials removed); null without a source. */
  url: string | null;
  source: ModelSource | null;
  sha256?: string;
  /** Bytes: of the installed file, of the active download, or as the probe or model list says. */
  size?: number;
  /** Why the source will refuse an anonymous download (an account, a licence to accept). */
  gated?: string;
  /** Where an installed file is when that is not `dest` (see locate.ts). */
  found_at?: string;
  /** The active download of `dest`. */
  download_id?: string;
  nodes: WorkflowNodeRef[];
  /**
   * Why the model cannot be downloaded to `dest`: the service refuses its name or folder
   * (`INVALID_PATH`, `UNKNOWN_FOLDER`, …). It may still be installed: ComfyUI's rules are looser.
   */
  error?: { code: string; message: string };
}

export interface Plan {
  name?: string;
  models: PlannedModel[];
  /** Sum of the known sizes of the `missing` models that can be downloaded. */
  missing_bytes: number;
}

/** `POST /api/workflows/download`: 202. */
export interface WorkflowDownloadAnswer extends GroupAnswer {
  models: PlannedModel[];
}

export interface ErrorBody {
  error: ErrorInfo;
}

/** One server of the fleet, as `GET /api/fleet` lists it (the page's and the CLI's "instances" indicator). */
export interface InstanceSummary {
  name: string;
  /** The server that answered. */
  self: boolean;
  live: boolean;
  /** It said it stopped (a SIGTERM): stale at once. */
  stopped: boolean;
  /** Seconds since it last published, when the answer was made (0 for the server that answered). */
  silent_seconds: number;
  downloads: number;
  active: number;
  host?: string;
}

/** What `GET /api/fleet` answers (fleet mode only). */
export interface FleetDescription {
  instance: string;
  stale_seconds: number;
  instances: InstanceSummary[];
}
