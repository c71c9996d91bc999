/**
 * Commands across the fleet: pause, resume, cancel, retry or remove of another server's download
 * are handed to that server as a file, `FLEET_DIR/commands/<its name>/<unique>.json` (written
 * atomically), which it picks up within `pollMs` (250 ms), removes, then executes: at most once.
 * The outcome shows in its published entries, as any change does. A command older than
 * `maxAgeMs` when found (its server was down) is dropped unexecuted: a pause asked an hour ago
 * is not what anyone wants now.
 *
 *   { "version": 1, "id": "<download id>", "command": "pause", "dest": "loras/x.safetensors",
 *     "from": "pod-b", "hops": 0 }
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { VolumeClock } from './clock';
import { writeAtomic, INSTANCE_NAME, type FleetPaths } from './files';

export const FLEET_COMMANDS = ['pause', 'resume', 'cancel', 'retry', 'remove'] as const;
export type FleetCommand = (typeof FLEET_COMMANDS)[number];

export interface CommandFile {
  version: 1;
  id: string;
  command: FleetCommand;
  dest: string;
  /** The server that handed it on. */
  from: string;
  /** How many servers handed it on (a download taken over meanwhile is followed, a few times at most). */
  hops: number;
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Hands `cmd` to server `to`. Throws the file system's error when the folder cannot be written. */
export async function sendCommand(paths: FleetPaths, to: string, cmd: Omit<CommandFile, 'version'>): Promise<void> {
  const dir = path.join(paths.commands, to);
  await fs.mkdir(dir, { recursive: true });
  const name = `${Date.now().toString(36)}-${crypto.randomBytes(8).toString('hex')}.json`;
  await writeAtomic(path.join(dir, name), `${JSON.stringify({ version: 1, ...cmd })}\n`);
}

/**
 * Takes the commands waiting for server `me`, oldest first: each file removed before it is
 * returned (a command is executed at most once), those older than `maxAgeMs` (volume clock) or
 * not valid listed apart.
 */
export async function takeCommands(
  paths: FleetPaths,
  me: string,
  clock: VolumeClock,
  maxAgeMs: number,
): Promise<{ commands: CommandFile[]; dropped: string[] }> {
  const dir = path.join(paths.commands, me);
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  } catch {
    return { commands: [], dropped: [] };
  }
  const commands: CommandFile[] = [];
  const dropped: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    let text: string;
    let mtimeMs: number;
    try {
      [text, { mtimeMs }] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
      await fs.rm(file);
    } catch {
      continue; // gone meanwhile
    }
    const cmd = parseCommand(text);
    if (!cmd) dropped.push(`${name}: not a command`);
    else if (clock.now() - mtimeMs > maxAgeMs) dropped.push(`${cmd.command} of ${cmd.dest} from ${cmd.from}: ${Math.round((clock.now() - mtimeMs) / 1000)} s old`);
    else commands.push(cmd);
  }
  return { commands, dropped };
}

function parseCommand(text: string): CommandFile | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    if (v.version !== 1 || typeof v.id !== 'string' || !ID.test(v.id)) return undefined;
    if (typeof v.command !== 'string' || !(FLEET_COMMANDS as readonly string[]).includes(v.command)) return undefined;
    if (typeof v.from !== 'string' || !INSTANCE_NAME.test(v.from) || typeof v.dest !== 'string' || v.dest.length > 4096) return undefined;
    const hops = typeof v.hops === 'number' && Number.isInteger(v.hops) && v.hops >= 0 ? v.hops : 0;
    return { version: 1, id: v.id, command: v.command as FleetCommand, dest: v.dest, from: v.from, hops };
  } catch {
    return undefined;
  }
}
