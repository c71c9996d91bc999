/**
 * A ComfyUI-Manager `model-list.json` (MODEL_LIST_FILE): `{ "models": [{ name, type, base,
 * save_path, filename, url, size?, … }] }`, read as the Manager places files (its get_model_dir):
 * `save_path: "default"` means the folder of the entry's `type`; any other `save_path` is a path
 * under `models/` whose first part is the folder (`checkpoints/SVD` → folder `checkpoints`, name
 * `SVD/svd.safetensors`). `size` is a text like `"4.71MB"` (decimal units) or a number of bytes.
 */
import fsp from 'node:fs/promises';
import { AppError } from '../errors';
import { canonicalFolder } from './loaders';
import type { SourceEntry } from './source-index';

/** The Manager's `type` → the folder a `save_path: "default"` entry goes to; other types go to `etc`. */
export const TYPE_FOLDERS: Readonly<Record<string, string>> = Object.freeze({
  checkpoints: 'checkpoints',
  checkpoint: 'checkpoints',
  unclip: 'checkpoints',
  clip: 'text_encoders',
  text_encoders: 'text_encoders',
  vae: 'vae',
  lora: 'loras',
  't2i-adapter': 'controlnet',
  't2i-style': 'controlnet',
  controlnet: 'controlnet',
  clip_vision: 'clip_vision',
  gligen: 'gligen',
  upscale: 'upscale_models',
  embeddings: 'embeddings',
  embedding: 'embeddings',
  unet: 'diffusion_models',
  diffusion_model: 'diffusion_models',
});

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** `"4.71MB"` → 4710000; a number of bytes as it is; anything else → undefined. */
export function parseSize(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*([\d.]+)\s*([KMGT]?B)\s*$/i.exec(v);
  if (!m || !Number.isFinite(Number(m[1]))) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
}

/** Where the Manager saves an entry, as (folder, name under it); undefined when outside `models/`. */
function placeOf(entry: Record<string, unknown>, filename: string): { folder: string; name: string } | undefined {
  const savePath = typeof entry.save_path === 'string' ? entry.save_path.trim().replace(/\\/g, '/') : 'default';
  if (savePath === 'default' || savePath === '') {
    const folder = TYPE_FOLDERS[String(entry.type ?? '').toLowerCase()] ?? 'etc';
    return { folder, name: filename };
  }
  // The Manager puts `..` and absolute paths in models/etc, and custom_nodes/… beside a node's code.
  if (savePath.includes('..') || savePath.startsWith('/')) return { folder: 'etc', name: filename };
  if (savePath.startsWith('custom_nodes')) return undefined;
  const [folder, ...sub] = savePath.split('/').filter(Boolean);
  return { folder: canonicalFolder(folder!), name: [...sub, filename].join('/') };
}

/** The list's entries with a URL and a file name, as sources. Throws 500 MODEL_LIST_INVALID. */
export function parseModelList(data: unknown, file = 'MODEL_LIST_FILE'): SourceEntry[] {
  const models = (data as { models?: unknown } | null)?.models;
  if (!Array.isArray(models)) throw new AppError('MODEL_LIST_INVALID', `${file} (MODEL_LIST_FILE) has no \`models\` array; expected ComfyUI-Manager's model-list.json`, { status: 500 });
  const out: SourceEntry[] = [];
  for (const e of models) {
    if (!e || typeof e !== 'object') continue;
    const entry = e as Record<string, unknown>;
    if (typeof entry.url !== 'string' || !/^https?:\/\//i.test(entry.url)) continue;
    if (typeof entry.filename !== 'string' || entry.filename.trim() === '') continue;
    const filename = entry.filename.trim().replace(/\\/g, '/');
    const place = placeOf(entry, filename);
    const size = parseSize(entry.size);
    out.push({
      folder: place?.folder,
      name: place?.name ?? filename,
      url: entry.url,
      ...(size === undefined ? {} : { size }),
    });
  }
  return out;
}

/** Reads MODEL_LIST_FILE each time (the Manager updates it in place). */
export async function loadModelList(file: string): Promise<SourceEntry[]> {
  let data: unknown;
  try {
    data = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read as JSON (${(err as Error).message})`;
    throw new AppError('MODEL_LIST_INVALID', `MODEL_LIST_FILE is ${file}, which ${why}; fix the variable or unset it`, { status: 500, cause: err });
  }
  return parseModelList(data, file);
}
