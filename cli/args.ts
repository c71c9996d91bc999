import { parseArgs as parseNodeArgs } from 'node:util';

export type Command = 'add' | 'watch' | 'status' | 'help';

export interface CliOptions {
  command: Command;
  /** Base URL of the server, e.g. `http://127.0.0.1:8866/`. */
  server: string;
  token?: string;
  url?: string;
  folder: string;
  filename?: string;
  sha256?: string;
  json: boolean;
}

/** A command line that cannot be run: printed with the usage, exit code 2. */
export class UsageError extends Error {}

export const USAGE = `Usage: npm run cli -- <command> [options]

Commands:
  add <url> [--folder F] [--filename N] [--sha256 H]   start a download (folder: checkpoints unless given)
  watch                                              live progress until no download is active;
                                                     exits 1 if one of them failed
  status [--json]                                    every download, once

Options:
  --server URL   the Model Downloader (default http://127.0.0.1:$PORT, PORT defaulting to 8866)
  -h, --help     this text

API_TOKEN is taken from the environment when the server needs one.`;

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
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command = 'help', ...rest] = positionals;
  if (values.help || command === 'help') return { command: 'help', server: '', folder: 'checkpoints', json: false };
  if (command !== 'add' && command !== 'watch' && command !== 'status') throw new UsageError(`Unknown command \`${command}\`; expected add, watch or status`);
  if (command === 'add' && rest.length !== 1) throw new UsageError('`add` takes exactly one URL');
  if (command !== 'add' && rest.length > 0) throw new UsageError(`\`${command}\` takes no arguments, got \`${rest.join(' ')}\``);

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
    command,
    server: server.toString(),
    ...(token ? { token } : {}),
    ...(command === 'add' ? { url: rest[0]! } : {}),
    folder: values.folder ?? 'checkpoints',
    ...(values.filename ? { filename: values.filename } : {}),
    ...(values.sha256 ? { sha256: values.sha256 } : {}),
    json: values.json,
  };
}
