/**
 * Whether a model is installed: the file is in one of the folders ComfyUI searches for its folder
 * name — MODELS_DIR's own (`text_encoders` and the legacy `clip`, …: loaders.ts) and the
 * extra_model_paths.yaml ones, in ComfyUI's order (an `is_default` group's paths go first). A name
 * or folder that would leave the searched folder (`..`, absolute) is never looked up.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ExtraPath } from './extra-paths';
import { subfoldersOf } from './loaders';

export interface Location {
  /** Bytes of the installed file. */
  size: number;
  /**
   * Where it is when that is not its `dest`: relative to MODELS_DIR for MODELS_DIR's other folders
   * (`clip/x.safetensors`), `<group>:<path under the group's base_path>` for extra paths
   * (`comfyui:models/loras/x.safetensors`). Never an absolute path of the server.
   */
  foundAt?: string;
}

interface SearchDir {
  dir: string;
  /** Absent for MODELS_DIR's own folders. */
  extra?: ExtraPath;
}

/** The folders ComfyUI searches for `folder`, first to last (folder_paths.add_model_folder_path). */
export function searchDirs(modelsDir: string, extra: readonly ExtraPath[], folder: string): SearchDir[] {
  const dirs: SearchDir[] = subfoldersOf(folder).map((sub) => ({ dir: path.resolve(modelsDir, sub) }));
  for (const e of extra) {
    if (e.folder !== folder) continue;
    const at = dirs.findIndex((d) => d.dir === e.dir);
    if (at >= 0) {
      if (e.isDefault && at > 0) dirs.unshift(...dirs.splice(at, 1));
    } else if (e.isDefault) {
      dirs.unshift({ dir: e.dir, extra: e });
    } else {
      dirs.push({ dir: e.dir, extra: e });
    }
  }
  return dirs;
}

/** The parts of a name that stays inside the folder it is looked up in, or undefined. */
function safeParts(name: string): string[] | undefined {
  if (name === '' || name.includes('\0') || path.isAbsolute(name) || /^[A-Za-z]:/.test(name)) return undefined;
  const parts = name.split('/');
  return parts.some((p) => p === '' || p === '.' || p === '..') ? undefined : parts;
}

const posix = (p: string): string => p.split(path.sep).join('/');

export interface Locator {
  locate(folder: string, name: string): Promise<Location | undefined>;
}

export function createLocator(modelsDir: string, extra: readonly ExtraPath[]): Locator {
  const root = path.resolve(modelsDir);
  return {
    async locate(folder, name) {
      const parts = safeParts(name);
      // A folder from a workflow's link is as untrusted as a name.
      if (!parts || !safeParts(folder)) return undefined;
      const dest = path.resolve(root, folder, ...parts);
      for (const { dir, extra: e } of searchDirs(root, extra, folder)) {
        const abs = path.resolve(dir, ...parts);
        if (!abs.startsWith(dir + path.sep)) continue;
        const stat = await fsp.stat(abs).catch(() => undefined);
        if (!stat?.isFile()) continue;
        if (abs === dest) return { size: stat.size };
        if (!e) return { size: stat.size, foundAt: posix(path.relative(root, abs)) };
        const rel = path.relative(e.root, abs);
        const shown = rel.startsWith('..') || path.isAbsolute(rel) ? `${folder}/${name}` : posix(rel);
        return { size: stat.size, foundAt: `${e.group}:${shown}` };
      }
      return undefined;
    },
  };
}
