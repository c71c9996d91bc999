import fsp from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import shipped from './default-catalog.json';
import { AppError, badRequest, conflict, notFound } from '../errors';
import type { Logger } from '../logger';
import { resolveDest } from '../disk/paths';
import { parseSourceUrl, redactUrl } from '../net/url-policy';

/** One model of the catalog (`model_configs.json`, the seed's format; see docs/reference.md, "Catalog file"). */
export interface CatalogModel {
  name: string;
  url: string;
  /** `<folder>/<file>` relative to MODELS_DIR: the `dest` its download gets. */
  path: string;
  description: string;
  sha256?: string;
  /** The source needs an account and an accepted licence (HF_TOKEN). */
  gated?: boolean;
}

export interface CatalogSet {
  name: string;
  models: Record<string, CatalogModel>;
}

export type CatalogData = Record<string, CatalogSet>;

export interface CatalogOptions {
  /** `CATALOG_FILE`. */
  file: string;
  modelsDir: string;
  log: Logger;
}

/** Ids of sets and models: they appear in URLs and as JSON keys, so no `/`, no `__proto__`. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const SHA256 = /^[0-9a-fA-F]{64}$/;

export function checkId(value: unknown, what: 'model_set' | 'model_id'): string {
  if (typeof value !== 'string' || !ID.test(value)) {
    throw badRequest('INVALID_ID', `Expected \`${what}\` to be letters, digits, ".", "_" or "-" (at most 100, starting with a letter or digit), got ${JSON.stringify(value ?? null)}`);
  }
  return value;
}

/**
 * Validates a model given by a user: `path` must be `<folder>/<file>` inside MODELS_DIR and `url`
 * an http(s) URL without credentials (the catalog is served to every client and kept on disk).
 */
export function validateModel(input: unknown, modelsDir: string): CatalogModel {
  if (!input || typeof input !== 'object' || Array.isArray(input)) throw badRequest('INVALID_BODY', 'Expected a JSON object with `name`, `url` and `path`');
  const m = input as Record<string, unknown>;
  if (typeof m.name !== 'string' || m.name.trim() === '' || m.name.length > 200) throw badRequest('INVALID_NAME', 'Expected `name` to be a non-empty string of at most 200 characters');
  const url = parseSourceUrl(m.url);
  if (redactUrl(url) !== url.toString()) {
    throw badRequest('URL_CREDENTIALS', 'The URL carries a credential or a signature (token=…, sig=…); give the plain URL and set HF_TOKEN or CIVITAI_TOKEN instead');
  }
  if (typeof m.path !== 'string' || !m.path.includes('/')) {
    throw badRequest('INVALID_PATH', 'Expected `path` to be `<folder>/<file>` under the models folder, e.g. "loras/detail.safetensors"');
  }
  const slash = m.path.lastIndexOf('/');
  const dest = resolveDest(modelsDir, m.path.slice(0, slash), m.path.slice(slash + 1)).dest;
  if (m.description !== undefined && (typeof m.description !== 'string' || m.description.length > 2000)) {
    throw badRequest('INVALID_DESCRIPTION', 'Expected `description` to be a string of at most 2000 characters');
  }
  if (m.sha256 !== undefined && m.sha256 !== '' && (typeof m.sha256 !== 'string' || !SHA256.test(m.sha256))) {
    throw badRequest('INVALID_SHA256', 'Expected `sha256` to be 64 hexadecimal digits');
  }
  const gated = m.gated === true || m.gated === 'true';
  return {
    name: m.name.trim(),
    url: url.toString(),
    path: dest,
    description: typeof m.description === 'string' ? m.description : '',
    ...(typeof m.sha256 === 'string' && m.sha256 !== '' ? { sha256: m.sha256.toLowerCase() } : {}),
    ...(gated ? { gated: true } : {}),
  };
}

/** A model id made from its file name: `flux1-dev.safetensors` → `flux1-dev`. */
function idFromPath(p: string): string {
  const stem = path.posix.basename(p).replace(/\.[^.]*$/, '');
  const id = stem.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 90);
  return id || 'model';
}

const own = <T>(o: Record<string, T>, key: string): T | undefined => (Object.hasOwn(o, key) ? o[key] : undefined);

/**
 * The catalog file: read on every request, so that a hand edit is picked up at once, and changed
 * by one writer at a time (read, change, atomic write), so that two edits never lose one another.
 * A file that does not parse is never overwritten: the error says how to fix it.
 */
export class Catalog {
  private readonly o: CatalogOptions;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: CatalogOptions) {
    this.o = options;
  }

  /** Creates the file from the shipped default when it is missing. */
  async open(): Promise<void> {
    try {
      await fsp.access(this.o.file);
    } catch {
      await this.writeDefault();
      return;
    }
    await this.read().catch((err: unknown) => this.o.log.warn((err as Error).message));
  }

  async read(): Promise<CatalogData> {
    let text: string;
    try {
      text = await fsp.readFile(this.o.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AppError('CATALOG_UNREADABLE', `Cannot read the catalog ${this.o.file}: ${(err as Error).message}`, { cause: err });
      return this.writeDefault(); // deleted while we run: the default is back
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw this.invalid(`it is not valid JSON (${(err as Error).message})`);
    }
    if (!data || typeof data !== 'object' || Array.isArray(data)) throw this.invalid('expected an object of model sets');
    for (const [id, set] of Object.entries(data as Record<string, unknown>)) {
      const models = (set as { models?: unknown } | null)?.models;
      if (!set || typeof set !== 'object' || !models || typeof models !== 'object' || Array.isArray(models)) {
        throw this.invalid(`the set \`${id}\` has no \`models\` object`);
      }
    }
    return data as CatalogData;
  }

  async get(setId: string, modelId: string): Promise<CatalogModel> {
    return this.find(await this.read(), setId, modelId);
  }

  /** Adds a model; its id is given or made from its file name. */
  addModel(setId: string, input: unknown, options: { id?: unknown; setName?: unknown } = {}): Promise<{ model_id: string; model: CatalogModel }> {
    return this.change((data) => {
      checkId(setId, 'model_set');
      const model = validateModel(input, this.o.modelsDir);
      const set = own(data, setId) ?? (data[setId] = { name: typeof options.setName === 'string' && options.setName.trim() ? options.setName.trim() : setId, models: {} });
      let id: string;
      if (options.id !== undefined && options.id !== '') {
        id = checkId(options.id, 'model_id');
        if (own(set.models, id)) throw conflict('MODEL_EXISTS', `The set \`${setId}\` already has a model \`${id}\`; edit it with PUT, or choose another id`);
      } else {
        const base = idFromPath(model.path);
        id = base;
        for (let n = 2; own(set.models, id); n++) id = `${base}-${n}`;
      }
      set.models[id] = model;
      return { model_id: id, model };
    });
  }

  /** Replaces a model. */
  putModel(setId: string, modelId: string, input: unknown): Promise<{ model_id: string; model: CatalogModel }> {
    return this.change((data) => {
      const set = this.findSet(data, setId);
      this.find(data, setId, modelId);
      const model = validateModel(input, this.o.modelsDir);
      set.models[modelId] = model;
      return { model_id: modelId, model };
    });
  }

  /** Removes a model, and its set when that was the last one. */
  deleteModel(setId: string, modelId: string): Promise<void> {
    return this.change((data) => {
      const set = this.findSet(data, setId);
      this.find(data, setId, modelId);
      delete set.models[modelId];
      if (Object.keys(set.models).length === 0) delete data[setId];
    });
  }

  /** Waits for pending writes. */
  async close(): Promise<void> {
    await this.tail.catch(() => undefined);
  }

  private findSet(data: CatalogData, setId: string): CatalogSet {
    const set = typeof setId === 'string' ? own(data, setId) : undefined;
    if (!set) throw notFound('NOT_FOUND', `No model set \`${String(setId)}\` in the catalog`);
    return set;
  }

  private find(data: CatalogData, setId: string, modelId: string): CatalogModel {
    const model = typeof modelId === 'string' ? own(this.findSet(data, setId).models, modelId) : undefined;
    if (!model) throw notFound('NOT_FOUND', `No model \`${String(modelId)}\` in the set \`${setId}\``);
    return model;
  }

  /** Runs one read-change-write after the previous one finished; a failed change writes nothing. */
  private change<T>(fn: (data: CatalogData) => T): Promise<T> {
    const run = this.tail.then(async () => {
      const data = await this.read();
      const result = fn(data);
      await this.write(data);
      return result;
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async write(data: CatalogData): Promise<void> {
    await fsp.mkdir(path.dirname(this.o.file), { recursive: true });
    await writeFileAtomic(this.o.file, `${JSON.stringify(data, null, 2)}\n`);
  }

  private async writeDefault(): Promise<CatalogData> {
    const data = structuredClone(shipped) as CatalogData;
    try {
      await this.write(data);
      this.o.log.info(`created the catalog ${this.o.file} from the shipped default`);
    } catch (err) {
      // A read-only folder: serve the default from memory, it is still useful.
      this.o.log.warn(`could not create the catalog ${this.o.file}: ${(err as Error).message}`);
    }
    return data;
  }

  private invalid(why: string): AppError {
    return new AppError('CATALOG_INVALID', `The catalog ${path.basename(this.o.file)} cannot be used: ${why}. Fix it, or delete it to get the shipped default back`, { status: 500 });
  }
}
