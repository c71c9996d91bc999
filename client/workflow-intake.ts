/**
 * The Workflow section's intake: files dropped anywhere on the page, a chosen file told apart
 * (PNG by its signature, else JSON) and checked against the server's limits, and the workflow kept
 * in sessionStorage across a reload (JSON text, or a PNG as a data: URL) and read back.
 */
import { formatBytes } from './format.js';

/** The server's limits (server/api/workflow-routes.ts), checked here first to spare the upload. */
const MAX_JSON_BYTES = 16 * 1024 * 1024;
const MAX_PNG_BYTES = 64 * 1024 * 1024;
/** A workflow up to this size is kept with the plan, so "Download" still works after a reload. */
const KEEP_SOURCE_CHARS = 2 * 1024 * 1024;
export const STORE_KEY = 'model-downloader.workflow';
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The workflow as it is sent: the file's bytes (PNG) or text (JSON). */
export interface Source {
  type: 'application/json' | 'image/png';
  body: Blob | string;
  /** The file's name, sent as `?name=`. */
  name?: string;
}

/** Files dropped anywhere on the page go to `open`; `section` is marked while they are dragged over. */
export function acceptDrops(section: HTMLElement, open: (file: File) => void): void {
  const hasFiles = (event: DragEvent): boolean => [...(event.dataTransfer?.types ?? [])].includes('Files');
  let depth = 0;
  const mark = (on: boolean): void => {
    if (on) section.dataset.drag = 'on';
    else delete section.dataset.drag;
  };
  // Files may be dropped anywhere on the page: a browser would otherwise open them in the tab.
  window.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    depth++;
    mark(true);
  });
  window.addEventListener('dragleave', (event) => {
    if (!hasFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) mark(false);
  });
  window.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
  });
  window.addEventListener('drop', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    mark(false);
    const file = event.dataTransfer?.files[0];
    if (!file) return;
    section.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    open(file);
  });
}

/** A dropped or chosen file: a PNG by its signature, else JSON by its name or first character; a string says why it is refused. */
export async function sourceOf(file: File): Promise<Source | string> {
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const isPng = PNG_SIGNATURE.every((b, i) => head[i] === b);
  const firstChar = new TextDecoder().decode(head).trimStart()[0];
  const looksJson = /\.json$/i.test(file.name) || file.type === 'application/json' || firstChar === '{' || firstChar === '[';
  if (!isPng && !looksJson) return `${file.name} is neither a workflow .json nor a PNG saved by ComfyUI.`;
  const limit = isPng ? MAX_PNG_BYTES : MAX_JSON_BYTES;
  if (file.size > limit) return `${file.name} is ${formatBytes(file.size)}; a workflow ${isPng ? 'PNG' : 'JSON file'} can be at most ${formatBytes(limit)}.`;
  return { type: isPng ? 'image/png' : 'application/json', body: file, name: file.name };
}

/** A workflow as sessionStorage keeps it: JSON text, or a PNG as a data: URL. */
export interface StoredSource {
  type: Source['type'];
  body: string;
  name?: string;
}

/** The stored form of a workflow small enough to keep; undefined for a bigger one. */
export async function storable(source: Source): Promise<StoredSource | undefined> {
  const name = source.name ? { name: source.name } : {};
  const { body } = source;
  if (typeof body === 'string') return body.length <= KEEP_SOURCE_CHARS ? { type: source.type, body, ...name } : undefined;
  // A data: URL is 4/3 the size of the bytes.
  if (body.size > (source.type === 'image/png' ? (KEEP_SOURCE_CHARS * 3) / 4 : KEEP_SOURCE_CHARS)) return undefined;
  try {
    if (source.type === 'application/json') return { type: source.type, body: await body.text(), ...name };
    const url = await new Promise<string>((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(body);
    });
    return { type: source.type, body: url, ...name };
  } catch {
    return undefined;
  }
}

export function readStored(value: unknown): StoredSource | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const { type, body, name } = value as Record<string, unknown>;
  if ((type !== 'application/json' && type !== 'image/png') || typeof body !== 'string') return undefined;
  return { type, body, ...(typeof name === 'string' ? { name } : {}) };
}

export function fromStored(kept: StoredSource): Source | undefined {
  const name = kept.name ? { name: kept.name } : {};
  if (kept.type === 'application/json') return { type: kept.type, body: kept.body, ...name };
  const blob = dataUrlBlob(kept.body);
  return blob ? { type: kept.type, body: blob, ...name } : undefined;
}

function dataUrlBlob(url: string): Blob | undefined {
  const match = /^data:([^;,]+)?;base64,(.*)$/s.exec(url);
  if (!match) return undefined;
  try {
    const binary = atob(match[2]!);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new Blob([bytes], { type: match[1] ?? 'image/png' });
  } catch {
    return undefined;
  }
}
