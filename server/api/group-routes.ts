/**
 * Commands for a whole group (a workflow's models, a Hugging Face folder): pause, resume, cancel
 * or retry every download of the group that the command fits, in one request. Each download goes
 * through the same command as its own button (in fleet mode, handed to the server that owns it);
 * the others are listed as left alone with why, so a group of 200 files is one click, not 200.
 */
import type Router from '@koa/router';
import { AppError, notFound } from '../errors';
import type { Entry, GroupCommandAnswer } from '../protocol/wire';
import { commandFits, type Command } from '../protocol/status';

export type GroupCommand = Extract<Command, 'pause' | 'resume' | 'cancel' | 'retry'>;

export interface GroupRouteDeps {
  /** Every download listed (in fleet mode, every live server's). */
  list(): Entry[];
  /** One download's command, as `POST /api/downloads/:id/<command>` runs it. */
  run(command: GroupCommand, id: string): Promise<{ download: Entry; forwarded_to?: string }>;
}

const GROUP_COMMANDS: readonly GroupCommand[] = ['pause', 'resume', 'cancel', 'retry'];

/**
 * `POST /api/groups/:id/{pause,resume,cancel,retry}`. Pause and cancel take the queued downloads
 * first, so that stopping one under way never lets another of the same group start meanwhile.
 */
export function registerGroupRoutes(router: Router, deps: GroupRouteDeps): void {
  for (const command of GROUP_COMMANDS) {
    router.post(`/api/groups/:id/${command}`, async (ctx) => {
      const id = ctx.params.id!;
      const members = deps.list().filter((e) => e.group?.id === id);
      if (members.length === 0) throw notFound('NOT_FOUND', `No download belongs to a group with id \`${id}\``);
      const order = command === 'pause' || command === 'cancel' ? (e: Entry) => (e.status === 'queued' ? 0 : 1) : () => 0;
      const answer: GroupCommandAnswer = { group: members[0]!.group!, downloads: [], left: [] };
      for (const e of [...members].sort((a, b) => order(a) - order(b))) {
        if (!commandFits(command, e.status)) {
          answer.left.push({ id: e.id, dest: e.dest, status: e.status });
          continue;
        }
        try {
          answer.downloads.push((await deps.run(command, e.id)).download);
        } catch (err) {
          // It changed meanwhile (finished, another command, its server went silent), or FLEET_DIR
          // could not be written for it: say so and go on, the others' commands are done already.
          if (!(err instanceof AppError)) throw err;
          answer.left.push({ id: e.id, dest: e.dest, status: e.status, error: err.toJSON() });
        }
      }
      ctx.body = answer;
    });
  }
}
