/**
 * A ComfyUI workflow in any of the forms users have — UI-format JSON (ui-format.ts), API-format
 * JSON, or a PNG that carries either — turned into one flat list of the nodes that will run, each
 * with its model links and the values of its file-name widgets as ComfyUI will see them.
 */
import { badRequest } from '../errors';
import { LOADERS } from './loaders';
import { isPng, readPngText } from './png';
import { isObj, parseUi, type Obj } from './ui-format';

/** A model link as the frontend stores it (`properties.models[]`, the workflow's `models[]`). */
export interface ModelLink {
  name: string;
  url?: string;
  directory?: string;
  hash?: string;
  hash_type?: string;
}

export interface WorkflowNode {
  /** The node's id; inside subgraphs the path of ids `outer:inner`, as ComfyUI's API format names it. */
  id: number | string;
  type: string;
  /** The file-name widgets of a known loader (see loaders.ts), by input name, with the value ComfyUI will use. */
  widgets: Record<string, unknown>;
  /** Every literal value the node holds: a model link counts only when its name is one of them. */
  values: unknown[];
  links: ModelLink[];
}

export interface ParsedWorkflow {
  format: 'ui' | 'api';
  nodes: WorkflowNode[];
  /** The workflow's own `models[]`. */
  links: ModelLink[];
}

const notAWorkflow = (what: string) =>
  badRequest('NOT_A_WORKFLOW', `${what} is not a ComfyUI workflow: expected the UI format (an object with \`nodes\`), the API format ({ "<id>": { "class_type", "inputs" } }) or a PNG saved by ComfyUI`);

/** Bytes of a request body (PNG or JSON) → the workflow. Throws 400 for anything else. */
export function parseWorkflowBytes(bytes: Buffer): ParsedWorkflow {
  if (isPng(bytes)) return parseWorkflowPng(bytes);
  let data: unknown;
  try {
    data = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw badRequest('INVALID_JSON', `The body is neither a PNG nor valid JSON: ${(err as Error).message}`);
  }
  return parseWorkflow(data);
}

/** A PNG saved by ComfyUI: its `workflow` chunk (UI format, with model links), else its `prompt` (API format). */
export function parseWorkflowPng(png: Buffer): ParsedWorkflow {
  const texts = readPngText(png);
  const failures: string[] = [];
  for (const key of ['workflow', 'prompt']) {
    const text = texts.get(key);
    if (text === undefined) continue;
    try {
      return parseWorkflow(JSON.parse(text));
    } catch (err) {
      failures.push(`its \`${key}\` chunk is not a usable workflow (${(err as Error).message})`);
    }
  }
  if (failures.length) throw badRequest('NOT_A_WORKFLOW', `The PNG carries workflow text, but ${failures.join('; ')}`);
  throw badRequest(
    'NO_WORKFLOW_IN_PNG',
    'This PNG carries no ComfyUI workflow (no `workflow` or `prompt` text chunk). Was it saved with --disable-metadata, or re-encoded by another program? Open the original image, or the workflow JSON.',
  );
}

/** Parsed JSON → the workflow. Also takes `{ workflow }` and `/prompt` bodies (`{ prompt, extra_data }`). */
export function parseWorkflow(data: unknown): ParsedWorkflow {
  if (!isObj(data)) throw notAWorkflow(Array.isArray(data) ? 'A JSON array' : 'This JSON value');
  if (Array.isArray(data.nodes)) return parseUi(data);
  const extra = isObj(data.extra_data) && isObj(data.extra_data.extra_pnginfo) ? data.extra_data.extra_pnginfo.workflow : undefined;
  for (const inner of [data.workflow, extra]) if (isObj(inner) && Array.isArray(inner.nodes)) return parseUi(inner);
  if (isObj(data.prompt)) return parseApi(data.prompt);
  return parseApi(data);
}

// ---------------------------------------------------------------- API format

function parseApi(graph: Obj): ParsedWorkflow {
  const nodes: WorkflowNode[] = [];
  for (const [id, n] of Object.entries(graph)) {
    if (!isObj(n) || typeof n.class_type !== 'string' || !isObj(n.inputs)) continue;
    const inputs = n.inputs;
    const widgets: Record<string, unknown> = {};
    for (const spec of LOADERS[n.class_type] ?? []) {
      let v = inputs[spec.widget];
      // A linked input is [nodeId, slot]: a name only when it comes from a primitive node's `value`.
      if (Array.isArray(v)) {
        const origin = graph[String(v[0])];
        v = isObj(origin) && String(origin.class_type).startsWith('Primitive') && isObj(origin.inputs) ? origin.inputs.value : undefined;
      }
      if (v !== undefined) widgets[spec.widget] = v;
    }
    nodes.push({ id, type: n.class_type, widgets, values: [...Object.values(inputs).filter((v) => !Array.isArray(v)), ...Object.values(widgets)], links: [] });
  }
  if (nodes.length === 0) throw notAWorkflow('This JSON object');
  return { format: 'api', nodes, links: [] };
}
