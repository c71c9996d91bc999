/**
 * Owns where a command on a download is carried out: this server's download, here; another live
 * server's, handed to it through FLEET_DIR (commands.ts); a silent server's, refused. Also the
 * inbox: the commands other servers handed to this one, executed (or handed on to the server that
 * took the download over meanwhile).
 */
import type { Downloader } from '../downloader/downloader';
import { AppError, conflict, notFound } from '../errors';
import type { Logger } from '../logger';
import { commandFits } from '../protocol/status';
import type { Entry } from '../protocol/wire';
import type { StatusStore } from '../store/status-store';
import type { VolumeClock } from './clock';
import { sendCommand, takeCommands, type CommandFile, type FleetCommand } from './commands';
import type { FleetPaths } from './files';
import type { FleetView } from './view';

/** What routing works with: the fleet member's parts. */
export interface RoutingContext {
  instance: string;
  staleSeconds: number;
  downloader: Downloader | undefined;
  paths: FleetPaths;
  view: FleetView;
  store: StatusStore;
  clock: VolumeClock;
  log: Logger;
}

/**
 * A command by download id: this server's download, done here; another live server's, handed
 * to it (`forwarded_to`: answered before it is done; the change shows in its entries within
 * about a second). A silent server's download: `409 INSTANCE_STALE`.
 */
export async function routeCommand(c: RoutingContext, action: FleetCommand, id: string): Promise<{ download: Entry; forwarded_to?: string }> {
  const d = c.downloader!;
  if (typeof id === 'string' && c.store.getById(id)) {
    const e = action === 'remove' ? d.remove(id) : d[action](id);
    return { download: c.view.own(e) };
  }
  const remote = typeof id === 'string' ? c.view.remoteById(id) : undefined;
  if (!remote) throw notFound('NOT_FOUND', `No download with id \`${String(id)}\``);
  if (remote.instance_stale) {
    throw Object.assign(
      conflict(
        'INSTANCE_STALE',
        `${remote.dest} is listed by instance ${remote.instance}, which has not been heard from for over ${c.staleSeconds} s; its unfinished downloads are taken over by another server (command them there)`,
      ),
      { download: remote },
    );
  }
  if (!commandFits(action, remote.status)) {
    const refusal =
      action === 'remove' ? conflict('ACTIVE', `${remote.dest} is ${remote.status}; cancel it first`) : conflict('INVALID_STATE', `Cannot ${action} ${remote.dest}: it is ${remote.status}`);
    throw Object.assign(refusal, { download: remote });
  }
  try {
    await sendCommand(c.paths, remote.instance!, { id, command: action, dest: remote.dest, from: c.instance, hops: 0 });
  } catch (err) {
    throw new AppError('FLEET_UNAVAILABLE', `Cannot hand the ${action} of ${remote.dest} to instance ${remote.instance} through FLEET_DIR (${(err as Error).message})`, { status: 503, cause: err });
  }
  c.log.info(`${remote.dest}: ${action} handed to instance ${remote.instance}`);
  return { download: remote, forwarded_to: remote.instance! };
}

/** The commands handed to this server: taken from its folder in FLEET_DIR and executed, in order. */
export async function runInbox(c: RoutingContext): Promise<void> {
  const maxAgeMs = Math.max(60_000, 2 * c.staleSeconds * 1000);
  const { commands, dropped } = await takeCommands(c.paths, c.instance, c.clock, maxAgeMs);
  for (const why of dropped) c.log.warn(`fleet: dropped a command (${why})`);
  for (const cmd of commands) await execute(c, cmd);
}

async function execute(c: RoutingContext, cmd: CommandFile): Promise<void> {
  const d = c.downloader;
  if (!d) return;
  const what = `${cmd.command} from instance ${cmd.from}`;
  try {
    if (c.store.getById(cmd.id)) {
      const e = cmd.command === 'remove' ? d.remove(cmd.id) : d[cmd.command](cmd.id);
      c.log.info(`${e.dest}: ${what}: done${cmd.command === 'remove' ? '' : ` (now ${e.status})`}`);
      return;
    }
    // Taken over meanwhile: follow the download to its new owner (a few hops at most).
    const remote = c.view.remoteById(cmd.id);
    if (remote && !remote.instance_stale && cmd.hops < 3) {
      await sendCommand(c.paths, remote.instance!, { ...cmd, from: c.instance, hops: cmd.hops + 1 });
      c.log.info(`${cmd.dest}: ${what}: handed on to instance ${remote.instance}, which has it now`);
      return;
    }
    c.log.warn(`${cmd.dest}: ${what}: no such download here any more`);
  } catch (err) {
    c.log.warn(`${cmd.dest}: ${what} failed: ${(err as Error).message}`);
  }
}
