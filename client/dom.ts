/**
 * The small DOM helpers the page's views share: an element with a class and text, and writers
 * that touch a node only when what they would write changed.
 */

/** Small helper: an element with a class and optional text. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Writes `text` into `node` unless it is what was last written there. */
export function setter(last: Map<string, string>): (key: string, node: HTMLElement, text: string) => void {
  return (key, node, text) => {
    if (last.get(key) === text) return;
    last.set(key, text);
    node.textContent = text;
  };
}

/** Runs `apply` unless `value` is what it was last run for. */
export function applier(last: Map<string, string>): (key: string, apply: () => void, value: string) => void {
  return (key, apply, value) => {
    if (last.get(key) === value) return;
    last.set(key, value);
    apply();
  };
}
