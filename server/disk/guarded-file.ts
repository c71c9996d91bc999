import type { FileHandle } from 'node:fs/promises';

/** The FileHandle methods that change a file's bytes or length. */
const WRITES = new Set<PropertyKey>(['write', 'writev', 'writeFile', 'appendFile', 'truncate']);

/**
 * `file`, with `guard` called (synchronously) before every call that changes its bytes or length:
 * a guard that throws refuses the write before it is issued (the call's promise rejects with it). Fleet mode's hold on a destination
 * (server/fleet/) is such a guard: the pump's positional writes go through here, so a server that
 * lost its hold writes no further byte, whichever event (a socket read, a disk write finishing)
 * runs first. Without a guard, `file` itself.
 */
export function guardFile(file: FileHandle, guard: (() => void) | undefined): FileHandle {
  if (!guard) return file;
  return new Proxy(file, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (!WRITES.has(key)) return fn.bind(target);
      return (...args: unknown[]) => {
        try {
          guard();
        } catch (err) {
          return Promise.reject(err); // as the write would have failed: a rejected promise
        }
        return fn.apply(target, args);
      };
    },
  });
}
