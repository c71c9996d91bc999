/**
 * Which model files a parsed workflow needs: the file-name widgets of known loaders (loaders.ts),
 * the frontend's model links (`properties.models[]` of a node, kept when their name is one of the
 * node's widget values; the workflow's `models[]`), each (folder, name) once with every node that
 * uses it. Names keep their subfolders and use `/` (a Windows `SDXL\x.safetensors` becomes
 * `SDXL/x.safetensors`); folders use ComfyUI's current names (`clip` → `text_encoders`).
 */
import { canonicalFolder, LOADERS, NOT_A_FILE } from './loaders';
import type { ModelLink, ParsedWorkflow, WorkflowNode } from './parse';

import type { WorkflowNodeRef } from '../protocol/wire';

export type NodeRef = WorkflowNodeRef;

export interface WantedModel {
  /** ComfyUI's folder name, e.g. `checkpoints`. */
  folder: string;
  /** The name the workflow uses, relative to the folder: `SDXL/x.safetensors`. */
  name: string;
  /** From the first model link that gave one. */
  url?: string;
  /** From a link's `hash` with `hash_type: "sha256"`, lower-case. */
  sha256?: string;
  nodes: NodeRef[];
}

const SHA256 = /^[0-9a-f]{64}$/i;

/** `SDXL\x.safetensors` → `SDXL/x.safetensors`; repeated separators collapse. */
export const normalizeName = (name: string): string => name.trim().replace(/[\\/]+/g, '/');

const normalizeFolder = (folder: string): string => canonicalFolder(normalizeName(folder).replace(/^\/+|\/+$/g, ''));

const basename = (name: string): string => name.slice(name.lastIndexOf('/') + 1);

export function extractModels(wf: ParsedWorkflow): WantedModel[] {
  const byKey = new Map<string, WantedModel>();

  const add = (rawFolder: string, rawName: string, node?: WorkflowNode, link?: ModelLink): void => {
    const folder = normalizeFolder(rawFolder);
    const name = normalizeName(rawName);
    if (!folder || NOT_A_FILE.has(name)) return;
    const key = `${folder}\0${name}`;
    let m = byKey.get(key);
    if (!m) byKey.set(key, (m = { folder, name, nodes: [] }));
    if (node && !m.nodes.some((n) => n.id === node.id)) m.nodes.push({ id: node.id, type: node.type });
    if (link?.url && m.url === undefined) m.url = link.url.trim();
    if (link?.hash && m.sha256 === undefined && link.hash_type?.toLowerCase() === 'sha256' && SHA256.test(link.hash)) m.sha256 = link.hash.toLowerCase();
  };

  for (const node of wf.nodes) {
    /** The loader's file names → the folder it reads each from: the loader knows better than a link. */
    const loaded = new Map<string, string>();
    for (const spec of LOADERS[node.type] ?? []) {
      const v = node.widgets[spec.widget];
      if (typeof v !== 'string') continue;
      add(spec.folder, v, node);
      loaded.set(normalizeName(v), spec.folder);
    }
    const values = node.values.filter((v): v is string => typeof v === 'string').map(normalizeName);
    for (const link of node.links) {
      // The frontend's rule: a link counts when the node uses it. A widget value may carry a
      // subfolder the link's name lacks (`SDXL/x.safetensors` for `x.safetensors`): the value is the name.
      const linkName = normalizeName(link.name);
      const used = values.find((v) => v === linkName) ?? values.find((v) => basename(v) === linkName);
      if (used === undefined) continue;
      const folder = loaded.get(used) ?? link.directory;
      if (folder) add(folder, used, node, link);
    }
  }
  for (const link of wf.links) if (link.directory) add(link.directory, link.name, undefined, link);
  return [...byKey.values()];
}
