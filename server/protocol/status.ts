/**
 * The download state machine, the one copy: the statuses, which of them hold a transfer slot or end
 * a download, the status changes the downloader may make, and the commands that fit each status.
 * The server checks against it, the page shows the buttons it allows, the CLI picks what to watch.
 * Pure TypeScript with no imports: the page's build (tsconfig.client.json) compiles it for the
 * browser, so the page imports it at runtime as `../server/protocol/status.js`.
 */

export const STATUSES = ['queued', 'starting', 'downloading', 'paused', 'verifying', 'completed', 'error', 'cancelled'] as const;

export type DownloadStatus = (typeof STATUSES)[number];

/** States in which a download holds (or waits for) a transfer slot; a restart resumes them. */
export const ACTIVE_STATUSES: readonly DownloadStatus[] = ['queued', 'starting', 'downloading', 'verifying'];
/** States that end a download; such entries may be cleared. */
export const FINISHED_STATUSES: readonly DownloadStatus[] = ['completed', 'error', 'cancelled'];

export const isStatus = (value: unknown): value is DownloadStatus => typeof value === 'string' && (STATUSES as readonly string[]).includes(value);
export const isActive = (status: DownloadStatus): boolean => ACTIVE_STATUSES.includes(status);
export const isFinished = (status: DownloadStatus): boolean => FINISHED_STATUSES.includes(status);

/**
 * The status changes the downloader makes, and no others. Keeping a status (a progress update, a
 * new attempt while `starting`) is not a change and is always allowed. A new download, a file
 * already on disk and an orphan `.part` listed as `paused` are new entries, not changes; edits of
 * the status file by another process are taken as they are (their entries are validated instead).
 */
export const TRANSITIONS: Readonly<Record<DownloadStatus, readonly DownloadStatus[]>> = {
  // verifying: a file already whole on disk at the start of a job (killed between its rename and
  // the status write) is checked instead of fetched again.
  queued: ['starting', 'verifying', 'paused', 'cancelled'],
  // verifying without downloading: a resumed `.part` already held every byte (416 to the range).
  // queued: a shutdown or restart puts an unfinished download back in the queue.
  starting: ['downloading', 'verifying', 'paused', 'cancelled', 'error', 'queued'],
  // starting: an attempt failed and the next waits out its backoff.
  downloading: ['starting', 'verifying', 'paused', 'cancelled', 'error', 'queued'],
  paused: ['queued', 'cancelled'],
  // starting: the file found whole on disk failed its sha256: it is fetched again.
  verifying: ['completed', 'error', 'starting', 'cancelled', 'queued'],
  completed: [],
  error: ['queued'],
  // completed: a cancel that lands while the verified `.part` is being renamed to its final name
  // (the one step a job does not abandon): the file is whole and in place, so the entry says so.
  cancelled: ['queued', 'completed'],
};

/** Whether the downloader may move a download from `from` to `to` (keeping a status always is). */
export const canTransition = (from: DownloadStatus, to: DownloadStatus): boolean => from === to || TRANSITIONS[from].includes(to);

/**
 * What a user (the API, the WebSocket, the page's buttons, the CLI) may ask of one download.
 * `remove` is `DELETE /api/downloads/:id`: it forgets a finished download.
 */
export type Command = 'pause' | 'resume' | 'cancel' | 'retry' | 'remove';

/** The commands that fit each status; the server answers 409 INVALID_STATE (or ACTIVE, for remove) to the others. */
export const COMMANDS: Readonly<Record<DownloadStatus, readonly Command[]>> = {
  queued: ['pause', 'cancel'],
  starting: ['pause', 'cancel'],
  downloading: ['pause', 'cancel'],
  paused: ['resume', 'cancel'],
  verifying: ['cancel'],
  completed: ['remove'],
  error: ['retry', 'remove'],
  cancelled: ['retry', 'remove'],
};

export const commandFits = (command: Command, status: DownloadStatus): boolean => COMMANDS[status].includes(command);

/** The status each command moves a download to (`remove` drops the entry instead). */
export const COMMAND_TARGETS: Readonly<Record<Exclude<Command, 'remove'>, DownloadStatus>> = {
  pause: 'paused',
  resume: 'queued',
  cancel: 'cancelled',
  retry: 'queued',
};
