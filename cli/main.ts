// The terminal client's only module with side effects: read the command line, run, exit.
// `npm run cli -- <command>` builds it first (tsconfig.cli.json) and runs dist/cli/cli/main.js.
import type { AddResult, Entry } from '../server/protocol/wire';
import { CliError, createApi } from './api';
import { parseArgs, USAGE, UsageError, type CliOptions } from './args';
import { line } from './render';
import { watch } from './watch';

async function run(o: CliOptions): Promise<number> {
  const api = createApi(o.server, o.token);
  switch (o.command) {
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case 'add': {
      const req = { url: o.url, folder: o.folder, ...(o.filename ? { filename: o.filename } : {}), ...(o.sha256 ? { sha256: o.sha256 } : {}) };
      const { status, body } = await api.request<{ download: Entry; status?: AddResult['outcome']; error?: { message: string } }>('POST', 'api/downloads', req);
      if (status === 409) {
        process.stderr.write(`${body.error?.message ?? 'Already active'}: ${body.download.dest}\n`);
        return 1;
      }
      if (body.status === 'already_exists') process.stdout.write(`Already there: ${body.download.dest} (give --filename to save it under another name)\n`);
      else process.stdout.write(`Started: ${body.download.dest} (id ${body.download.id}). Follow it with: npm run cli -- watch\n`);
      return 0;
    }
    case 'status': {
      const { body } = await api.request<{ downloads: Entry[] }>('GET', 'api/downloads');
      if (o.json) process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      else if (body.downloads.length === 0) process.stdout.write('No downloads.\n');
      else for (const e of body.downloads) process.stdout.write(`${line(e)}\n`);
      return 0;
    }
    case 'watch':
      return watch({ server: o.server, ...(o.token ? { token: o.token } : {}), api, out: process.stdout });
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

// Exit at once: idle keep-alive sockets must not hold a finished command for seconds.
void main().then((code) => process.exit(code));
