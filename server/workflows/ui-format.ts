/**
 * The UI format (what ComfyUI saves: schema 0.4 and 1, subgraphs in `definitions.subgraphs`,
 * nested) → the nodes that will run. Muted (mode 2) and bypassed (mode 4) nodes, and all that is
 * inside a muted or bypassed subgraph node, are left out; each subgraph instance is walked on its
 * own, its nodes named `outer:inner` as in ComfyUI's API format.
 *
 * Values reach a loader inside a subgraph in three ways, tried in this order:
 * 1. the loader's input is linked to the subgraph's input, whose value the instance node holds in
 *    `widgets_values`, one per widget-backed input (ComfyUI_frontend SubgraphNode.serialize), or
 *    gets from its own parent's input (nested subgraphs);
 * 2. an ancestor instance lists the widget in `properties.proxyWidgets` and holds one value per
 *    entry in `widgets_values`;
 * 3. the loader's own `widgets_values` (where the frontend keeps a promoted widget's value too).
 */
import { LOADERS } from './loaders';
import type { ModelLink, ParsedWorkflow, WorkflowNode } from './parse';

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
export const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
export const isName = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';

function readLinks(v: unknown): ModelLink[] {
  const out: ModelLink[] = [];
  for (const m of arr(v)) {
    if (!isObj(m) || !isName(m.name)) continue;
    const link: ModelLink = { name: m.name };
    for (const k of ['url', 'directory', 'hash', 'hash_type'] as const) if (typeof m[k] === 'string' && m[k] !== '') link[k] = m[k];
    out.push(link);
  }
  return out;
}

interface RawInput {
  name?: unknown;
  link?: unknown;
  widget?: { name?: unknown };
}
interface RawNode extends Obj {
  id: number | string;
  type: string;
  mode?: unknown;
  inputs?: RawInput[];
  widgets_values?: unknown;
  properties?: Obj;
}
interface Link {
  origin: string;
  originSlot: number;
  target: string;
  targetSlot: number;
}
/** A graph: the workflow itself or a subgraph definition. */
interface Graph {
  id: string;
  nodes: RawNode[];
  links: Map<string, Link>;
  /** A definition's inputs (`inputs[]`: name, linkIds). */
  inputs: Array<{ name: string; linkIds: string[] }>;
}
/** Where a node sits: its graph, and for a subgraph the instance node that runs it and that node's scope. */
interface Scope {
  graph: Graph;
  path: string;
  parent?: { scope: Scope; instance: RawNode };
  depth: number;
}

/** The id of a subgraph's input node: links from it carry the subgraph's inputs (litegraph SUBGRAPH_INPUT_ID). */
const SUBGRAPH_INPUT = '-10';
const MUTED = 2;
const BYPASSED = 4;
const MAX_DEPTH = 32;
const inputsOf = (node: RawNode | undefined): RawInput[] => arr(node?.inputs).filter(isObj) as RawInput[];
/** The values of a seed's `control_after_generate` companion, which older files kept in the instance's values. */
const CONTROL_VALUES = new Set(['fixed', 'increment', 'decrement', 'randomize']);

function readGraphLinks(v: unknown): Map<string, Link> {
  const links = new Map<string, Link>();
  for (const l of arr(v)) {
    // Schema 0.4: [id, origin_id, origin_slot, target_id, target_slot, type]; schema 1 and subgraphs: objects.
    const [id, origin, originSlot, target, targetSlot] = Array.isArray(l) ? l : isObj(l) ? [l.id, l.origin_id, l.origin_slot, l.target_id, l.target_slot] : [];
    if (id === undefined || id === null) continue;
    links.set(String(id), { origin: String(origin), originSlot: Number(originSlot), target: String(target), targetSlot: Number(targetSlot) });
  }
  return links;
}

function readGraph(g: Obj, id: string): Graph {
  const nodes = arr(g.nodes).filter((n): n is RawNode => isObj(n) && (typeof n.id === 'number' || typeof n.id === 'string') && typeof n.type === 'string');
  const inputs = arr(g.inputs).map((i) => (isObj(i) ? { name: String(i.name ?? ''), linkIds: arr(i.linkIds).map(String) } : { name: '', linkIds: [] }));
  return { id, nodes, links: readGraphLinks(g.links), inputs };
}

/** Every subgraph definition, also those nested in a definition's own `definitions`. */
function collectDefinitions(root: Obj, into = new Map<string, Graph>()): Map<string, Graph> {
  const defs = isObj(root.definitions) ? arr(root.definitions.subgraphs) : [];
  for (const d of defs) {
    if (!isObj(d) || typeof d.id !== 'string' || into.has(d.id)) continue;
    into.set(d.id, readGraph(d, d.id));
    collectDefinitions(d, into);
  }
  return into;
}

export function parseUi(root: Obj): ParsedWorkflow {
  const defs = collectDefinitions(root);
  const nodes: WorkflowNode[] = [];
  const walk = (scope: Scope): void => {
    for (const node of scope.graph.nodes) {
      if (node.mode === MUTED || node.mode === BYPASSED) continue;
      const id = scope.path ? `${scope.path}:${node.id}` : node.id;
      const def = defs.get(node.type);
      if (def) {
        if (scope.depth < MAX_DEPTH) walk({ graph: def, path: String(id), parent: { scope, instance: node }, depth: scope.depth + 1 });
        continue;
      }
      const widgets: WorkflowNode['widgets'] = {};
      for (const spec of LOADERS[node.type] ?? []) {
        const v = widgetValue(scope, node, spec.widget, spec.index);
        if (v !== undefined) widgets[spec.widget] = v;
      }
      const own = node.widgets_values;
      const values = [...(Array.isArray(own) ? own : isObj(own) ? Object.values(own) : []), ...Object.values(widgets)];
      nodes.push({ id, type: node.type, widgets, values, links: readLinks(node.properties?.models) });
    }
  };
  walk({ graph: readGraph(root, 'root'), path: '', depth: 0 });
  return { format: 'ui', nodes, links: readLinks(root.models) };
}

/** A node's own value of a widget: by position in a `widgets_values` array, by name in an object. */
function ownValue(node: RawNode, widget: string, index: number | undefined): unknown {
  const values = node.widgets_values;
  if (Array.isArray(values)) return index === undefined ? undefined : values[index];
  return isObj(values) ? values[widget] : undefined;
}

/** The value ComfyUI will use for `widget` of `node` (see the order at the top of this file). */
function widgetValue(scope: Scope, node: RawNode, widget: string, index: number): unknown {
  const inputs = inputsOf(node);
  const input = inputs.find((i) => isObj(i.widget) && i.widget.name === widget) ?? inputs.find((i) => i.name === widget);
  if (input && input.link !== null && input.link !== undefined && scope.parent) {
    const link = scope.graph.links.get(String(input.link));
    if (link?.origin === SUBGRAPH_INPUT) {
      const v = subgraphInputValue(scope.parent.scope, scope.parent.instance, scope.graph, link.originSlot);
      if (isName(v)) return v;
    }
  }
  const promoted = proxyValue(scope, node, widget);
  if (isName(promoted)) return promoted;
  return ownValue(node, widget, index);
}

/** The value an instance node gives its subgraph's input `slot`: from its own parent when linked there, else its own. */
function subgraphInputValue(scope: Scope, instance: RawNode, def: Graph, slot: number): unknown {
  const name = def.inputs[slot]?.name;
  if (name === undefined) return undefined;
  const inputs = inputsOf(instance);
  const input = inputs[slot]?.name === name ? inputs[slot] : inputs.find((i) => i.name === name);
  if (input && input.link !== null && input.link !== undefined && scope.parent) {
    const link = scope.graph.links.get(String(input.link));
    if (link?.origin === SUBGRAPH_INPUT) {
      const v = subgraphInputValue(scope.parent.scope, scope.parent.instance, scope.graph, link.originSlot);
      if (isName(v)) return v;
    }
  }
  const values = instance.widgets_values;
  if (isObj(values)) return values[name];
  if (!Array.isArray(values)) return undefined;
  // One value per widget-backed input, in input order. Which inputs are: the instance's inputs say
  // so (`widget`); a file without them is read from the definition (inputs linked to a widget).
  const backed = def.inputs.map((d, j) => {
    const own = inputs[j]?.name === d.name ? inputs[j] : inputs.find((i) => i.name === d.name);
    if (own) return isObj(own.widget);
    return d.linkIds.some((lid) => {
      const l = def.links.get(lid);
      const target = l && def.nodes.find((n) => String(n.id) === l.target);
      return isObj(inputsOf(target)[l!.targetSlot]?.widget);
    });
  });
  if (!backed[slot]) return undefined;
  // Older files also kept a seed's control_after_generate value after it: skip those when there are more values than inputs.
  const extra = values.length > backed.filter(Boolean).length;
  let at = 0;
  for (let j = 0; j < slot; j++) {
    if (!backed[j]) continue;
    at += extra && typeof values[at] === 'number' && CONTROL_VALUES.has(values[at + 1] as string) ? 2 : 1;
  }
  return values[at];
}

type ProxyEntry = [nodeId: string, widget: string, source?: string];

/** `properties.proxyWidgets`: `[[nodeId, widget, sourceNodeId?], …]`, stored as an array or as its JSON text. */
function proxyEntries(instance: RawNode): ProxyEntry[] {
  let raw = instance.properties?.proxyWidgets;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      return [];
    }
  }
  return arr(raw)
    .filter((e): e is unknown[] => Array.isArray(e) && e.length >= 2)
    // Older entries prefixed the widget with its node: "12: ckpt_name".
    .map((e) => [String(e[0]), String(e[1]).replace(/^\s*\d+\s*:\s*/, ''), ...(e[2] === undefined ? [] : [String(e[2])])] as ProxyEntry);
}

/**
 * A value an ancestor instance holds for this node's widget through `proxyWidgets`, when it keeps
 * one value per entry. The outermost holder wins: it is the one the user sees and edits.
 */
function proxyValue(scope: Scope, node: RawNode, widget: string): unknown {
  let found: unknown;
  // Walk up: at each level, the entry names the child on the path down (the node itself at first).
  let childId = String(node.id);
  for (let s: Scope | undefined = scope; s?.parent; s = s.parent.scope) {
    const { instance } = s.parent;
    const entries = proxyEntries(instance);
    const values = instance.widgets_values;
    if (entries.length && Array.isArray(values) && values.length === entries.length) {
      const k = entries.findIndex(([nid, name, source]) => {
        if (name === widget && nid === childId) return source === undefined || source === String(node.id) || s === scope;
        // "-1": a subgraph input, by name, that feeds this widget.
        return nid === '-1' && s === scope && feedsWidget(scope.graph, name, node, widget);
      });
      if (k >= 0 && isName(values[k])) found = values[k];
    }
    childId = String(instance.id);
  }
  return found;
}

function feedsWidget(def: Graph, inputName: string, node: RawNode, widget: string): boolean {
  const input = def.inputs.find((i) => i.name === inputName);
  return !!input?.linkIds.some((lid) => {
    const l = def.links.get(lid);
    const input = l?.target === String(node.id) ? inputsOf(node)[l.targetSlot] : undefined;
    return isObj(input?.widget) && input.widget.name === widget;
  });
}
