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

/**
 * Windows device names, also with spaces before the extension (`con .bin`) and the console and
 * superscript-digit forms: such a file cannot be copied to a Windows share.
 */
const RESERVED = /^(con|prn|aux|nul|conin\$|conout\$|clock\$|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3])[ .]*(\..*)?$/i;
/** Control characters (C0, DEL, C1 — U+0085 among them) and line/paragraph separators. */
const CONTROL = /[\p{Cc}\u2028\u2029]/u;
/** Invisible formatting: bidi overrides and isolates (U+202E shows `exe.safetensors` reversed), zero-width characters, BOM. */
const INVISIBLE = /\p{Cf}/u;
/** Characters Windows refuses in a name (`:` and `\\` are refused separately, with their own message). */
const WINDOWS_INVALID = /[<>"|?*]/;

/**
 * The names of the service's own files beside a destination: `<dest>.part` (the bytes),
 * `<dest>.part.json` (the segment map) and its write-file-atomic temp names `<dest>.part.json.<hex>`.
 * No destination may take one, or a download could replace another's map or bytes.
 */
export const SIDE_FILE_NAME = /\.part(\.json(\.[^.]*)?)?$/i;
/**
 * Bytes a name may have: 255 (NAME_MAX on Linux, macOS and Windows file systems) less the longest
 * suffix the service adds (`.part.json.` and a 40-digit temp hash), so no side file is ever too long.
 */
export const MAX_NAME_BYTES = 200;

function checkSegment(segment: string, what: 'folder' | 'filename'): void {
  if (segment === '' || segment === '.' || segment === '..') {
    throw badRequest('INVALID_PATH', `The ${what} may not contain an empty, "." or ".." part, got \`${segment}\``);
  }
  if (CONTROL.test(segment)) throw badRequest('INVALID_PATH', `The ${what} may not contain control characters or line separators`);
  if (INVISIBLE.test(segment)) throw badRequest('INVALID_PATH', `The ${what} may not contain invisible formatting characters (bidi controls, zero-width spaces)`);
  if (segment.includes('\\')) throw badRequest('INVALID_PATH', `The ${what} may not contain a backslash`);
  if (segment.includes(':')) throw badRequest('INVALID_PATH', `The ${what} may not contain ":"`);
  if (WINDOWS_INVALID.test(segment)) throw badRequest('INVALID_PATH', `The ${what} may not contain < > " | ? or *: Windows refuses them`);
  if (/[ .]$/.test(segment)) throw badRequest('INVALID_PATH', `The ${what} may not end with a dot or a space: Windows drops them`);
  if (RESERVED.test(segment)) throw badRequest('INVALID_PATH', `\`${segment}\` is a reserved device name on Windows`);
  const bytes = Buffer.byteLength(segment);
  if (bytes > MAX_NAME_BYTES) throw badRequest('INVALID_PATH', `The ${what} part is ${bytes} bytes long in UTF-8; at most ${MAX_NAME_BYTES} are accepted`);
  if (SIDE_FILE_NAME.test(segment)) {
    throw badRequest('INVALID_PATH', `The ${what} may not end with .part or .part.json: those names are the downloader's own files`);
  }
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
  let clean = name
    .split(/[/\\]/)
    .pop()!
    .replace(/\p{Cf}/gu, '')
    .replace(/[\p{Cc}\u2028\u2029<>:"|?*]/gu, '_')
    .trim();
  for (let before = ''; before !== clean; ) {
    before = clean;
    clean = clean.replace(/^\.+/, '').replace(SIDE_FILE_NAME, '').replace(/[ .]+$/, '');
  }
  if (Buffer.byteLength(clean) > MAX_NAME_BYTES) {
    const ext = path.extname(clean);
    const keep = Buffer.byteLength(ext) <= 20 ? ext : '';
    clean = truncateBytes(clean.slice(0, clean.length - keep.length), MAX_NAME_BYTES - Buffer.byteLength(keep)).replace(/[ .]+$/, '') + keep;
  }
  if (clean === '' || RESERVED.test(clean)) return undefined;
  return clean;
}

/** The longest prefix of `s` that fits `max` bytes of UTF-8, never cutting a character in two. */
function truncateBytes(s: string, max: number): string {
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > max) break;
    bytes += n;
    end += ch.length;
  }
  return s.slice(0, end);
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

/**
 * Which of the service's own files (`own`, absolute) a download to `abs` would replace: the file
 * itself, its side files (`.lock`, write-file-atomic's temp names, a `.bad-*` copy), or one of
 * them written as this download's `.part` or segment map. Undefined when none.
 */
export function ownFileAt(abs: string, own: readonly string[]): string | undefined {
  const mine = [abs, `${abs}.part`, `${abs}.part.json`];
  return own.find((f) => mine.some((m) => m === f || m.startsWith(`${f}.`)))?.split(path.sep).pop();
}

/** The folder holding package.json, from source (server/) and from the build (dist/server/) alike. */
export function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}
