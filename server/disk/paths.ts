import fs from 'node:fs';
import path from 'node:path';
import { badRequest } from '../errors';

/** Top-level folders of a ComfyUI `models/` tree (ComfyUI folder_paths.py). */
export const COMFY_FOLDERS: readonly string[] = [
  'checkpoints',
  'clip',
  'clip_vision',
  'configs',
  'controlnet',
  'diffusers',
  'diffusion_models',
  'embeddings',
  'gligen',
  'hypernetworks',
  'loras',
  'model_patches',
  'photomaker',
  'style_models',
  'text_encoders',
  'unet',
  'upscale_models',
  'vae',
  'vae_approx',
  'audio_encoders',
  'ipadapter',
  'sams',
  'ultralytics',
];

/** Windows device names: a file called `CON.safetensors` cannot be copied to a Windows share. */
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
const CONTROL = /[\u0000-\u001f\u007f]/;

function checkSegment(segment: string, what: 'folder' | 'filename'): void {
  if (segment === '' || segment === '.' || segment === '..') {
    throw badRequest('INVALID_PATH', `The ${what} may not contain an empty, "." or ".." part, got \`${segment}\``);
  }
  if (CONTROL.test(segment)) throw badRequest('INVALID_PATH', `The ${what} may not contain control characters`);
  if (segment.includes('\\')) throw badRequest('INVALID_PATH', `The ${what} may not contain a backslash`);
  if (segment.includes(':')) throw badRequest('INVALID_PATH', `The ${what} may not contain ":"`);
  if (RESERVED.test(segment)) throw badRequest('INVALID_PATH', `\`${segment}\` is a reserved device name`);
  if (segment.length > 200) throw badRequest('INVALID_PATH', `The ${what} part is longer than 200 characters`);
  if (segment.endsWith('.part')) throw badRequest('INVALID_PATH', `The ${what} may not end with .part: that suffix is for files being downloaded`);
}

export interface Destination {
  /** Relative to MODELS_DIR with `/` separators: the key of the status file. */
  dest: string;
  folder: string;
  filename: string;
  /** Absolute path of the final file. */
  abs: string;
}

/**
 * Validates `folder` and `filename` and joins them under `modelsDir`. Refuses anything that could
 * leave it: `..`, absolute paths, separators in a filename, control characters, and a top-level
 * folder that is neither a ComfyUI model folder nor already present.
 */
export function resolveDest(modelsDir: string, folder: unknown, filename: unknown): Destination {
  if (typeof folder !== 'string' || folder.trim() === '') {
    throw badRequest('INVALID_FOLDER', `Expected \`folder\` to be a model folder such as "loras" or "checkpoints"`);
  }
  if (typeof filename !== 'string' || filename === '') {
    throw badRequest('INVALID_FILENAME', 'Expected `filename` to be a non-empty string');
  }
  if (folder.startsWith('/') || path.isAbsolute(folder)) {
    throw badRequest('INVALID_PATH', `The folder must be relative to the models folder, got \`${folder}\``);
  }
  const parts = folder.replace(/\/+$/, '').split('/');
  for (const part of parts) checkSegment(part, 'folder');
  if (filename.includes('/')) throw badRequest('INVALID_PATH', 'The filename may not contain "/"; put subfolders in `folder`');
  checkSegment(filename, 'filename');
  if (filename.startsWith('.')) throw badRequest('INVALID_PATH', 'The filename may not start with "."');

  const top = parts[0]!;
  if (!COMFY_FOLDERS.includes(top) && !isDirectory(path.join(modelsDir, top))) {
    throw badRequest(
      'UNKNOWN_FOLDER',
      `\`${top}\` is neither a ComfyUI model folder (${COMFY_FOLDERS.slice(0, 6).join(', ')}, …) nor a folder under the models folder`,
    );
  }
  const cleanFolder = parts.join('/');
  const dest = `${cleanFolder}/${filename}`;
  const abs = path.resolve(modelsDir, ...parts, filename);
  // Belt and braces: the checks above already make this impossible.
  if (!abs.startsWith(path.resolve(modelsDir) + path.sep)) throw badRequest('INVALID_PATH', 'The destination leaves the models folder');
  return { dest, folder: cleanFolder, filename, abs };
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The folders a user may pick: ComfyUI's plus any other folder already under `modelsDir`. */
export function listFolders(modelsDir: string): string[] {
  const found = new Set(COMFY_FOLDERS);
  try {
    for (const d of fs.readdirSync(modelsDir, { withFileTypes: true })) {
      if (d.isDirectory() && !d.name.startsWith('.')) found.add(d.name);
    }
  } catch {
    // The models folder does not exist yet: ComfyUI's folders are the choice.
  }
  return [...found].sort();
}

/**
 * Makes a single safe path segment out of a name a server or URL suggested: strips directories,
 * control characters and characters that are invalid on common filesystems. Returns undefined when
 * nothing usable is left.
 */
export function sanitizeFilename(name: string): string | undefined {
  let clean = name.split(/[/\\]/).pop()!.replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '_').trim();
  clean = clean.replace(/^\.+/, '').replace(/\.part$/, '');
  if (clean.length > 200) {
    const ext = path.extname(clean).slice(0, 20);
    clean = clean.slice(0, 200 - ext.length) + ext;
  }
  if (clean === '' || RESERVED.test(clean)) return undefined;
  return clean;
}

/** The last path segment of a URL, decoded and sanitized. */
export function filenameFromUrl(url: URL): string | undefined {
  const last = url.pathname.split('/').filter(Boolean).pop();
  if (!last) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(last);
  } catch {
    decoded = last;
  }
  return sanitizeFilename(decoded);
}

/** The folder holding package.json, from source (server/) and from the build (dist/server/) alike. */
export function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}
