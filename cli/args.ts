import { parseArgs as parseNodeArgs } from 'node:util';

/** What `pause`, `resume`, `cancel` and `retry` do to a download or a group (control.ts). */
export type ControlCommand = 'pause' | 'resume' | 'cancel' | 'retry';
export const CONTROL_COMMANDS: readonly ControlCommand[] = ['pause', 'resume', 'cancel', 'retry'];

export type Command = 'add' | 'watch' | 'status' | 'workflow' | ControlCommand | 'help';

export interface CliOptions {
  command: Command;
  /** Base URL of the server, e.g. `http://127.0.0.1:8866/`. */
  server: string;
  token?: string;
  /** `add`: the URL to download. */
  url?: string;
  /** `workflow`: the workflow file (JSON, or a PNG saved by ComfyUI). */
  file?: string;
  /** `pause`, `resume`, `cancel`, `retry`: a download's id or dest, or a group's id or name. */
  target?: string;
  folder: string;
  filename?: string;
  sha256?: string;
  json: boolean;
  /** `add`: return once the server accepted the download instead of waiting for its end. */
  noWait: boolean;
  /** `add`, `workflow`: a file already completed elsewhere (same sha256) is hard-linked into place. */
  link?: boolean;
  /** `workflow`: print the plan, start nothing. */
  dryRun: boolean;
}

/** A command line that cannot be run: printed with the usage, exit code 2. */
export class UsageError extends Error {}

export const USAGE = `Usage: npm run cli -- <command> [options]

Commands:
  add <url> [--folder F] [--filename N] [--sha256 H] [--link] [--no-wait]
        download a file (folder: checkpoints unless given) and wait for it with a progress bar;
        a Hugging Face repository or folder URL downloads its files, one bar each.
        Exits 0 when it completed or was already there, 1 when it failed or was cancelled.
        --no-wait returns as soon as the server accepted it. --link: a file the server already
        downloaded elsewhere (same sha256) is hard-linked into place instead of named.
  workflow <file.json|file.png> [--dry-run] [--link]
        the models a ComfyUI workflow (or a PNG saved by ComfyUI) needs, as a table; then
        downloads the missing ones and waits for them. Exits 0 when every model is installed
        at the end, 1 when one failed or has no source. --dry-run prints the table only
        (exit 0 only when every model is already installed).
  watch
        live progress until no download is active; exits 1 if one of them failed
  status [--json]
        every download, once
  pause|resume|cancel|retry <id|dest|group>
        the command for one download (its id, or its dest as status shows it), or for every
        file of a group (a workflow, a Hugging Face folder: its id or its name) that it fits.
        Exits 0 when it changed a download, 1 when it fitted none (a completed file is not
        paused).

Options:
  --server URL   the Model Downloader (default http://127.0.0.1:$PORT, PORT defaulting to 8866)
  -h, --help     this text

API_TOKEN is taken from the environment when the server needs one.
Exit code 2: a wrong command line, or a server that cannot be used (not reachable, wants a token,
failing with a 5xx).`;

const COMMANDS: readonly Command[] = ['add', 'watch', 'status', 'workflow', ...CONTROL_COMMANDS];

/** Options that only mean something to some commands: given to another, they are a mistake. */
const ONLY_FOR: Record<string, readonly Command[]> = {
  folder: ['add'],
  filename: ['add'],
  sha256: ['add'],
  link: ['add', 'workflow'],
  'no-wait': ['add'],
  json: ['status'],
  'dry-run': ['workflow'],
};

/** argv (without node and the script) and the environment → what to do. */
export function parseArgs(argv: readonly string[], env: Record<string, string | undefined>): CliOptions {
  let parsed;
  try {
    parsed = parseNodeArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        server: { type: 'string' },
        folder: { type: 'string' },
        filename: { type: 'string' },
        sha256: { type: 'string' },
        link: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        'no-wait': { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command = 'help', ...rest] = positionals;
  const defaults = { server: '', folder: 'checkpoints', json: false, noWait: false, dryRun: false };
  if (values.help || command === 'help') return { command: 'help', ...defaults };
  if (!(COMMANDS as readonly string[]).includes(command)) throw new UsageError(`Unknown command \`${command}\`; expected add, workflow, watch, status, pause, resume, cancel or retry`);
  const cmd = command as Exclude<Command, 'help'>;
  if (cmd === 'add' && rest.length !== 1) throw new UsageError('`add` takes exactly one URL');
  if (cmd === 'workflow' && rest.length !== 1) throw new UsageError('`workflow` takes exactly one file: a workflow saved as JSON, or a PNG saved by ComfyUI');
  const control = (CONTROL_COMMANDS as readonly string[]).includes(cmd);
  if (control && rest.length !== 1) throw new UsageError(`\`${cmd}\` takes one download (its id or dest) or one group (its id or name)`);
  if (cmd !== 'add' && cmd !== 'workflow' && !control && rest.length > 0) throw new UsageError(`\`${cmd}\` takes no arguments, got \`${rest.join(' ')}\``);
  for (const [option, commands] of Object.entries(ONLY_FOR)) {
    const given = (values as Record<string, unknown>)[option];
    if (given !== undefined && given !== false && !commands.includes(cmd)) throw new UsageError(`--${option} is for \`${commands.join('`, `')}\`, not \`${cmd}\``);
  }

  const raw = values.server ?? `http://127.0.0.1:${env.PORT?.trim() || '8866'}`;
  let server: URL;
  try {
    server = new URL(raw);
  } catch {
    throw new UsageError(`Expected --server to be a URL like http://127.0.0.1:8866, got \`${raw}\``);
  }
  if (server.protocol !== 'http:' && server.protocol !== 'https:') throw new UsageError(`Expected --server to be an http(s) URL, got \`${raw}\``);
  if (!server.pathname.endsWith('/')) server.pathname += '/'; // API paths resolve below it (a reverse-proxy prefix stays)
  server.search = '';
  server.hash = '';

  const token = env.API_TOKEN?.trim();
  return {
    command: cmd,
    server: server.toString(),
    ...(token ? { token } : {}),
    ...(cmd === 'add' ? { url: rest[0]! } : {}),
    ...(cmd === 'workflow' ? { file: rest[0]! } : {}),
    ...(control ? { target: rest[0]! } : {}),
    folder: values.folder ?? 'checkpoints',
    ...(values.filename ? { filename: values.filename } : {}),
    ...(values.sha256 ? { sha256: values.sha256 } : {}),
    json: values.json,
    noWait: values['no-wait'],
    dryRun: values['dry-run'],
    ...(values.link ? { link: true } : {}),
  };
}
