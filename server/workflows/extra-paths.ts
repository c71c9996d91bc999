/**
 * ComfyUI's `extra_model_paths.yaml`: the other folders where it looks for each kind of model.
 * Read as ComfyUI reads it (utils/extra_config.py): groups of `folder: path(s)`, one path per line
 * of a value; `base_path` (with `~` and environment variables expanded, relative to the YAML's
 * folder) before relative paths, which are otherwise relative to the YAML's folder; `is_default`
 * puts a group's paths first; the legacy names `unet` and `clip` mean `diffusion_models` and
 * `text_encoders`. Like ComfyUI, `~` and variables are expanded in `base_path` only.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { AppError } from '../errors';
import { canonicalFolder } from './loaders';

export interface ExtraPath {
  /** The YAML group it comes from (`comfyui:`, `a111:`…). */
  group: string;
  /** ComfyUI's folder name (legacy names mapped). */
  folder: string;
  /** Absolute folder searched. */
  dir: string;
  /** The group's `base_path`, or the YAML's folder: what `found_at` is relative to. */
  root: string;
  isDefault: boolean;
}

type Env = Record<string, string | undefined>;

/** Python's os.path.expandvars: `$NAME`, `${NAME}` (and Windows' `%NAME%`) when set; others stay as written. */
export function expandVars(s: string, env: Env): string {
  return s.replace(/\$(\w+)|\$\{([^}]+)\}|%(\w+)%/g, (whole, a?: string, b?: string, c?: string) => env[(a ?? b ?? c)!] ?? whole);
}

/** Python's os.path.expanduser for the current user: `~` and `~/…`. */
export function expandUser(s: string, home: string): string {
  return s === '~' || s.startsWith('~/') || s.startsWith('~\\') ? home + s.slice(1) : s;
}

const invalid = (file: string, why: string): AppError =>
  new AppError('EXTRA_MODEL_PATHS_INVALID', `${file} (EXTRA_MODEL_PATHS) cannot be used: ${why}. Fix it: ComfyUI reads the same file`, { status: 500 });

/** The YAML's text → the folders it adds, in file order. Throws EXTRA_MODEL_PATHS_INVALID. */
export function parseExtraModelPaths(text: string, file: string, env: Env = process.env, home: string = os.homedir()): ExtraPath[] {
  let config: unknown;
  try {
    // PyYAML reads YAML 1.1 (`is_default: yes` is true there).
    config = parseYaml(text, { version: '1.1' });
  } catch (err) {
    throw invalid(file, `it is not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  if (config === null || config === undefined) return [];
  if (typeof config !== 'object' || Array.isArray(config)) throw invalid(file, 'expected groups of `folder: path` at the top level');
  const yamlDir = path.dirname(path.resolve(file));
  const out: ExtraPath[] = [];
  for (const [group, conf] of Object.entries(config as Record<string, unknown>)) {
    if (conf === null || conf === undefined) continue;
    if (typeof conf !== 'object' || Array.isArray(conf)) throw invalid(file, `the group \`${group}\` is not a mapping of folders to paths`);
    const { base_path: rawBase, is_default: isDefault, ...folders } = conf as Record<string, unknown>;
    let base: string | undefined;
    if (typeof rawBase === 'string' && rawBase.trim() !== '') {
      base = path.resolve(yamlDir, expandUser(expandVars(rawBase.trim(), env), home));
    }
    for (const [key, value] of Object.entries(folders)) {
      // One path per line (a `|` block); a YAML list is taken too.
      const lines = typeof value === 'string' ? value.split('\n') : Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
      for (const line of lines.map((l) => l.trim()).filter(Boolean)) {
        const dir = path.isAbsolute(line) ? path.normalize(line) : path.resolve(base ?? yamlDir, line);
        out.push({ group, folder: canonicalFolder(key), dir, root: base ?? yamlDir, isDefault: Boolean(isDefault) });
      }
    }
  }
  return out;
}

/** The default place: `extra_model_paths.yaml` in ComfyUI's folder, the parent of MODELS_DIR. */
export const defaultExtraModelPathsFile = (modelsDir: string): string => path.join(path.dirname(path.resolve(modelsDir)), 'extra_model_paths.yaml');

/**
 * Reads the file each time (edits are picked up at once). `file` is EXTRA_MODEL_PATHS: when given
 * it must exist; without it the default file is used when present.
 */
export async function loadExtraModelPaths(file: string | undefined, modelsDir: string): Promise<ExtraPath[]> {
  const target = file ?? defaultExtraModelPathsFile(modelsDir);
  let text: string;
  try {
    text = await fsp.readFile(target, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && file === undefined) return [];
    throw new AppError(
      code === 'ENOENT' ? 'EXTRA_MODEL_PATHS_MISSING' : 'EXTRA_MODEL_PATHS_UNREADABLE',
      `EXTRA_MODEL_PATHS is ${target}, which ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as Error).message})`}; fix the variable or unset it`,
      { status: 500, cause: err },
    );
  }
  return parseExtraModelPaths(text, target);
}
