/**
 * A small or read-only disk under a folder, for the disk-fault tests.
 *
 * Where the machine allows it (root, or CAP_SYS_ADMIN), a real `tmpfs` of the given size is
 * mounted on the folder: the kernel then answers ENOSPC and EROFS exactly as a full or read-only
 * disk does, whatever code path writes. Elsewhere (CI that may not mount) the same errors are
 * injected at Node's file-system calls, for paths under the folder only, by replacements that
 * `release()` takes back: nothing stays changed for other tests. `DISK_FAULTS=inject` forces the
 * injected kind, to test that path on a machine that could mount.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SmallDisk {
  kind: 'tmpfs' | 'injected';
  dir: string;
  /** Gives the disk this many bytes in all (space freed, or the disk enlarged). */
  resize(bytes: number): Promise<void>;
  /** Makes the disk read-only (true) or writable again (false). */
  setReadOnly(readOnly: boolean): Promise<void>;
  /** Unmounts the tmpfs (or restores the spied calls). Idempotent; safe in afterAll after a failure. */
  release(): Promise<void>;
}

/** Mounts (or simulates) a disk of `bytes` on `dir`, creating the folder. */
export async function smallDisk(dir: string, bytes: number): Promise<SmallDisk> {
  await fsp.mkdir(dir, { recursive: true });
  if (process.env.DISK_FAULTS !== 'inject') {
    try {
      await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]);
      return tmpfs(dir);
    } catch {
      // Not allowed here: inject the errors instead.
    }
  }
  return injected(dir, bytes);
}

function tmpfs(dir: string): SmallDisk {
  let mounted = true;
  return {
    kind: 'tmpfs',
    dir,
    resize: async (bytes) => {
      await run('mount', ['-o', `remount,size=${bytes}`, dir]);
    },
    setReadOnly: async (readOnly) => {
      await run('mount', ['-o', readOnly ? 'remount,ro' : 'remount,rw', dir]);
    },
    release: async () => {
      if (!mounted) return;
      mounted = false;
      // Lazy when busy (a file still open by a server that failed to close): detached at once, freed when closed.
      await run('umount', [dir]).catch(() => run('umount', ['-l', dir]));
    },
  };
}

const errnoError = (code: 'ENOSPC' | 'EROFS', syscall: string, p?: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${code}: ${code === 'ENOSPC' ? 'no space left on device' : 'read-only file system'}, ${syscall}${p ? ` '${p}'` : ''}`), {
    code,
    errno: code === 'ENOSPC' ? -28 : -30,
    syscall,
    ...(p ? { path: p } : {}),
  });

/** Whether open() flags ask for writing. */
const writes = (flags: unknown): boolean => flags !== undefined && flags !== 'r' && flags !== 'rs' && flags !== fs.constants.O_RDONLY;

interface FakeDisk {
  root: string;
  quota: number;
  used: number;
  readOnly: boolean;
}

/** Every injected disk alive; the spies are installed with the first and restored with the last. */
const fakeDisks = new Set<FakeDisk>();
let restoreSpies: (() => void) | undefined;

const diskOf = (p: unknown): FakeDisk | undefined => {
  if (typeof p !== 'string' && !(p instanceof URL) && !Buffer.isBuffer(p)) return undefined;
  const abs = path.resolve(p instanceof URL ? p.pathname : String(p));
  for (const d of fakeDisks) if (abs === d.root || abs.startsWith(d.root + path.sep)) return d;
  return undefined;
};

async function injected(dir: string, bytes: number): Promise<SmallDisk> {
  const disk: FakeDisk = { root: path.resolve(dir), quota: bytes, used: 0, readOnly: false };
  if (!restoreSpies) restoreSpies = await installSpies();
  fakeDisks.add(disk);
  let released = false;
  return {
    kind: 'injected',
    dir,
    resize: async (n) => {
      disk.quota = n;
    },
    setReadOnly: async (ro) => {
      disk.readOnly = ro;
    },
    release: async () => {
      if (released) return;
      released = true;
      fakeDisks.delete(disk);
      if (fakeDisks.size === 0) {
        restoreSpies?.();
        restoreSpies = undefined;
      }
    },
  };
}

/** Spies on Node's file calls that answer ENOSPC and EROFS for paths on a fake disk; returns their restorer. */
async function installSpies(): Promise<() => void> {
  /** Files opened on a fake disk: their writes count against its quota. */
  const handles = new WeakMap<object, FakeDisk>();
  const fds = new Map<number, FakeDisk>();
  const restorers: Array<() => void> = [];
  let active = true;
  const restore = (): void => {
    active = false;
    for (const r of restorers.splice(0)) r();
  };
  /**
   * A write(…)/writev(…) call as its size, its position and a way to make it shorter (a full disk
   * takes what fits, then refuses, as the kernel does). `args` are the arguments after the fd.
   */
  const parseWrite = (name: string, args: unknown[]): { n: number; position: unknown; shorten(to: number): unknown[] | undefined } => {
    const [data, ...rest] = args;
    if (name === 'writev') {
      const buffers = data as NodeJS.ArrayBufferView[];
      return {
        n: buffers.reduce((sum, b) => sum + b.byteLength, 0),
        position: rest[0],
        shorten: (to) => {
          const kept: Buffer[] = [];
          for (const b of buffers) {
            const view = Buffer.from(b.buffer, b.byteOffset, Math.min(b.byteLength, to));
            if (view.length > 0) kept.push(view);
            to -= view.length;
          }
          return [kept, ...rest];
        },
      };
    }
    if (typeof data === 'string') return { n: Buffer.byteLength(data), position: rest[0], shorten: () => undefined };
    const buffer = data as NodeJS.ArrayBufferView;
    if (rest[0] !== null && typeof rest[0] === 'object') {
      const o = rest[0] as { offset?: number; length?: number; position?: unknown };
      return { n: o.length ?? buffer.byteLength - (o.offset ?? 0), position: o.position, shorten: (to) => [buffer, { ...o, length: to }, ...rest.slice(1)] };
    }
    const offset = (rest[0] as number | undefined) ?? 0;
    return { n: (rest[1] as number | undefined) ?? buffer.byteLength - offset, position: rest[2], shorten: (to) => [buffer, offset, to, ...rest.slice(2)] };
  };
  /**
   * How many of a write's bytes the disk takes: all, some (the rest of the room), or none (ENOSPC).
   * As on a real disk, rewriting bytes a file already holds takes no room; writing into the holes
   * of a sparse file (a segmented .part) or past its end does.
   */
  const room = (disk: FakeDisk | undefined, fd: number, n: number, position: unknown): number => {
    if (!disk) return n;
    let cost = n;
    if (typeof position === 'number' && position >= 0) {
      const st = fs.fstatSync(fd);
      const allocated = st.blocks * 512;
      if (allocated >= st.size) cost = Math.max(0, position + n - allocated); // its last block has room too
    }
    const free = Math.max(0, disk.quota - disk.used);
    if (cost <= free) {
      disk.used += cost;
      return n;
    }
    if (cost < n) return 0; // a rewrite that would also grow the file: all or nothing
    disk.used += free;
    return free;
  };
  const refuse = (syscall: string, ...paths: unknown[]): NodeJS.ErrnoException | undefined => {
    const p = paths.find((x) => diskOf(x)?.readOnly);
    return p === undefined ? undefined : errnoError('EROFS', syscall, String(p));
  };

  type AnyFn = (...args: any[]) => any;
  /**
   * Replaces obj[name] until restore(). Not jest.spyOn: Node captures some fs functions when a
   * lazy internal module first loads (fs.rm's rimraf takes fs.unlink, fs.open…), and a restored
   * jest mock called later does nothing, so an rm would hang for good. Ours, once restored, call
   * straight through to the original.
   */
  const spy = (obj: object, name: string, make: (original: AnyFn) => AnyFn): void => {
    const descriptor = Object.getOwnPropertyDescriptor(obj, name)!;
    const original = descriptor.value as AnyFn;
    const faulty = make(original);
    const replacement = function (this: unknown, ...args: unknown[]): unknown {
      return (active ? faulty : original).apply(this, args);
    };
    Object.defineProperty(obj, name, { ...descriptor, value: replacement });
    restorers.push(() => Object.defineProperty(obj, name, descriptor));
  };
  /** For callback-style calls: the callback is the last argument. */
  const callLater = (args: any[], err: NodeJS.ErrnoException): void => {
    process.nextTick(args[args.length - 1] as AnyFn, err);
  };

  const probe = await fsp.open(__filename, 'r');
  const fileHandle = Object.getPrototypeOf(probe) as object;
  await probe.close();

  try {
    // Opening: refused for writing on a read-only disk; files remembered for the quota.
    spy(fsp, 'open', (original) => async function (this: unknown, p: fs.PathLike, flags?: string | number, mode?: fs.Mode) {
      const err = writes(flags) ? refuse('open', p) : undefined;
      if (err) throw err;
      const handle = await original.call(this, p, flags, mode);
      const disk = diskOf(p);
      if (disk) handles.set(handle, disk);
      return handle;
    });
    spy(fs, 'open', (original) => function (this: unknown, p: fs.PathLike, ...rest: any[]) {
      const err = typeof rest[0] !== 'function' && writes(rest[0]) ? refuse('open', p) : undefined;
      if (err) return callLater(rest, err);
      const cb = rest.pop() as (e: NodeJS.ErrnoException | null, fd?: number) => void;
      return original.call(this, p, ...rest, (e: NodeJS.ErrnoException | null, fd?: number) => {
        const disk = diskOf(p);
        if (!e && fd !== undefined && disk) fds.set(fd, disk);
        cb(e, fd);
      });
    });
    spy(fs, 'close', (original) => function (this: unknown, fd: number, ...rest: unknown[]) {
      fds.delete(fd);
      return original.call(this, fd, ...rest);
    });
    // Writing through a FileHandle, or a descriptor (write-file-atomic).
    for (const name of ['write', 'writev']) {
      spy(fileHandle, name, (original) => async function (this: { fd: number }, ...args: unknown[]) {
        const call = parseWrite(name, args);
        const fits = room(handles.get(this), this.fd, call.n, call.position);
        if (fits === call.n) return original.apply(this, args);
        const shorter = fits > 0 ? call.shorten(fits) : undefined;
        if (!shorter) throw errnoError('ENOSPC', 'write');
        return original.apply(this, shorter);
      });
      spy(fs, name, (original) => function (this: unknown, fd: number, ...args: any[]) {
        const call = parseWrite(name, args.slice(0, -1));
        const fits = room(fds.get(fd), fd, call.n, call.position);
        if (fits === call.n) return original.call(this, fd, ...args);
        const shorter = fits > 0 ? call.shorten(fits) : undefined;
        if (!shorter) return callLater(args, errnoError('ENOSPC', 'write'));
        return original.call(this, fd, ...shorter, args[args.length - 1]);
      });
    }
    // Changing a folder: refused on a read-only disk (a folder that exists "created" again is fine).
    spy(fsp, 'mkdir', (original) => async function (this: unknown, p: fs.PathLike, options?: fs.MakeDirectoryOptions) {
      const err = fs.existsSync(p) ? undefined : refuse('mkdir', p);
      if (err) throw err;
      return original.call(this, p, options);
    });
    spy(fs, 'mkdir', (original) => function (this: unknown, p: fs.PathLike, ...rest: any[]) {
      const err = fs.existsSync(p) ? undefined : refuse('mkdir', p);
      if (err) return callLater(rest, err);
      return original.call(this, p, ...rest);
    });
    for (const name of ['rm', 'unlink', 'rename', 'truncate']) {
      spy(fsp, name, (original) => async function (this: unknown, a: unknown, ...rest: unknown[]) {
        const err = refuse(name, a, name === 'rename' ? rest[0] : undefined);
        if (err) throw err;
        return original.call(this, a, ...rest);
      });
    }
    for (const name of ['unlink', 'rename']) {
      spy(fs, name, (original) => function (this: unknown, a: unknown, ...rest: any[]) {
        const err = refuse(name, a, name === 'rename' ? rest[0] : undefined);
        if (err) return callLater(rest, err);
        return original.call(this, a, ...rest);
      });
    }
    // The free space a full disk reports.
    const shrink = (p: unknown, real: fs.StatsFs): fs.StatsFs => {
      const disk = diskOf(p);
      if (!disk) return real;
      const free = Math.max(0, Math.floor((disk.quota - disk.used) / real.bsize));
      return { ...real, bfree: free, bavail: free };
    };
    spy(fsp, 'statfs', (original) => async function (this: unknown, p: fs.PathLike, ...rest: unknown[]) {
      return shrink(p, await original.call(this, p, ...rest));
    });
    spy(fs, 'statfsSync', (original) => function (this: unknown, p: fs.PathLike, ...rest: unknown[]) {
      return shrink(p, original.call(this, p, ...rest));
    });
  } catch (err) {
    // Never leave a half-spied fs behind for the other tests.
    restore();
    throw err;
  }
  return restore;
}
