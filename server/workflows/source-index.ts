/**
 * Finding a model's URL in a list of known files (the catalog, a ComfyUI-Manager model list): by
 * folder and name first, then by file name in the same folder, then by file name in any folder —
 * a workflow often names `x.safetensors` where a list keeps `checkpoints/SDXL/x.safetensors`.
 */
import type { CatalogData } from '../catalog/catalog';
import { canonicalFolder } from './loaders';

export interface SourceEntry {
  /** ComfyUI's folder name; unknown for files the list places outside `models/`. */
  folder?: string | undefined;
  /** Relative to the folder, `/`-separated. */
  name: string;
  url: string;
  sha256?: string;
  size?: number;
  /** The source needs an account and an accepted licence. */
  gated?: boolean;
}

export interface SourceIndex {
  find(folder: string, name: string): SourceEntry | undefined;
}

const basename = (name: string): string => name.slice(name.lastIndexOf('/') + 1);

export function indexSources(entries: readonly SourceEntry[]): SourceIndex {
  const exact = new Map<string, SourceEntry>();
  const byFile = new Map<string, SourceEntry[]>();
  for (const e of entries) {
    const folder = e.folder === undefined ? undefined : canonicalFolder(e.folder);
    const entry = { ...e, folder };
    if (folder !== undefined && !exact.has(`${folder}\0${e.name}`)) exact.set(`${folder}\0${e.name}`, entry);
    const file = basename(e.name);
    byFile.set(file, [...(byFile.get(file) ?? []), entry]);
  }
  return {
    find(folder, name) {
      const f = canonicalFolder(folder);
      const hit = exact.get(`${f}\0${name}`);
      if (hit) return hit;
      const same = byFile.get(basename(name)) ?? [];
      return same.find((e) => e.folder === f) ?? same[0];
    },
  };
}

/** The catalog's models as sources (`path` is `<folder>/<name>`); entries without a usable path are skipped. */
export function catalogSources(data: CatalogData): SourceEntry[] {
  const out: SourceEntry[] = [];
  for (const set of Object.values(data)) {
    for (const m of Object.values(set?.models ?? {})) {
      if (!m || typeof m.url !== 'string' || typeof m.path !== 'string') continue;
      const slash = m.path.indexOf('/');
      if (slash < 1 || slash === m.path.length - 1) continue;
      out.push({
        folder: m.path.slice(0, slash),
        name: m.path.slice(slash + 1),
        url: m.url,
        ...(typeof m.sha256 === 'string' && /^[0-9a-f]{64}$/i.test(m.sha256) ? { sha256: m.sha256.toLowerCase() } : {}),
        ...(m.gated === true ? { gated: true } : {}),
      });
    }
  }
  return out;
}
