// The terminal client's only module with side effects: read the command line, run, exit.
// `npm run cli -- <command>` builds it first (tsconfig.cli.json) and runs dist/cli/cli/main.js.
import type { Entry } from '../server/protocol/wire';
import { add, type CommandContext } from './add';
import { CliError, createApi } from './api';
import { control } from './control';
import { parseArgs, USAGE, UsageError, type CliOptions } from './args';
import { destWidth, line } from './render';
import { watch } from './watch';
import { workflow } from './workflow';

async function status(c: CommandContext): Promise<number> {
  const { body } = await c.api.request<{ downloads: Entry[] }>('GET', 'api/downloads');
  if (c.o.json) c.out.write(`${JSON.stringify(body, null, 2)}\n`);
  else if (body.downloads.length === 0) c.out.write('No downloads.\n');
  else {
    // A group column when some download belongs to one (a workflow, a Hugging Face repository).
    const groups = body.downloads.map((e) => e.group?.name ?? '');
    const groupWidth = Math.min(28, Math.max(0, ...groups.map((g) => g.length)));
    // An instance column in fleet mode: which of the servers sharing the volume has each download.
    const instances = body.downloads.map((e) => `${e.instance ?? ''}${e.instance_stale ? ' (stale)' : ''}`);
    const instanceWidth = Math.min(32, Math.max(0, ...instances.map((i) => i.length)));
    const width = destWidth(body.downloads);
    for (const e of body.downloads) {
      c.out.write(`${line(e, { unicode: false, destWidth: width, ...(groupWidth > 0 ? { groupWidth } : {}), ...(instanceWidth > 0 ? { instanceWidth } : {}) })}\n`);
    }
  }
  return 0;
}

/** The commands that wait for downloads: Ctrl-C stops the waiting, not the downloads. */
const WAITING = new Set<CliOptions['command']>(['add', 'watch', 'workflow']);

async function run(o: CliOptions): Promise<number> {
  const c: CommandContext = { o, api: createApi(o.server, o.token), out: process.stdout, err: process.stderr };
  if (WAITING.has(o.command)) {
    process.once('SIGINT', () => {
      process.stderr.write('\nStopped waiting; the server goes on with the downloads (npm run cli -- watch to follow them again).\n');
      process.exit(130);
    });
  }
  switch (o.command) {
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case 'add':
      return add(c);
    case 'workflow':
      return workflow(c);
    case 'status':
      return status(c);
    case 'watch':
      return watch({ server: o.server, ...(o.token ? { token: o.token } : {}), api: c.api, out: process.stdout });
    case 'pause':
    case 'resume':
    case 'cancel':
    case 'retry':
      return control(c, o.command, o.target!);
  }
}

async function main(): Promise<number> {
  try {
    return await run(parseArgs(process.argv.slice(2), process.env));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof CliError) {
      process.stderr.write(`error: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`);
    return 2;
  }
}

// Exit at once: idle keep-alive sockets must not hold a finished command for seconds. Where
// stdout is written asynchronously (pipes on macOS, terminals on Windows), its last lines first.
void main().then((code) => {
  if (process.stdout.writableLength === 0) process.exit(code);
  else process.stdout.write('', () => process.exit(code));
});
