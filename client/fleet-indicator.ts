/**
 * The header's "instances" indicator in fleet mode: one chip per server sharing the volume, live
 * or silent, this page's own marked, from the last answer of `GET /api/fleet` (fleet.ts). Hidden
 * entirely until the server says it is in fleet mode, and on a lone server (404).
 */
import { el } from './dom.js';
import { silenceText, type FleetInfo, type FleetState, type InstanceSummary } from './fleet.js';

export interface FleetIndicatorElements {
  root: HTMLElement;
  list: HTMLElement;
}

export class FleetIndicator {
  /** What the list was last built from: rebuilt only when what it shows changed. */
  private shown = '';

  constructor(private readonly els: FleetIndicatorElements) {}

  render(state: FleetState): void {
    if (state.mode !== 'on') {
      this.els.root.hidden = true;
      return;
    }
    const { info } = state;
    const chips = info.instances.map((i) => chip(i, info));
    const key = JSON.stringify(chips.map((c) => [c.dataset.instance, c.dataset.live, c.textContent, c.title]));
    if (key !== this.shown) {
      this.shown = key;
      this.els.list.replaceChildren(...chips);
      const live = info.instances.filter((i) => i.live).length;
      const silent = info.instances.length - live;
      const counts = `${live} live${silent > 0 ? `, ${silent} silent` : ''}`;
      this.els.root.dataset.live = String(live);
      this.els.root.dataset.silent = String(silent);
      this.els.root.setAttribute('aria-label', `Instances: ${counts}`);
      this.els.root.title = `The servers sharing this volume (FLEET_DIR): ${counts}. A silent server's unfinished downloads are taken over by another after ${info.stale_seconds} s.`;
    }
    this.els.root.hidden = false;
  }
}

function chip(i: InstanceSummary, info: FleetInfo): HTMLLIElement {
  const li = el('li', 'inst');
  li.dataset.instance = i.name;
  li.dataset.live = String(i.live);
  li.dataset.self = String(i.self);
  const state = i.self ? 'this server' : i.live ? '' : silenceText(i.name, info);
  const dot = el('span', 'dot');
  dot.setAttribute('aria-hidden', 'true');
  li.append(dot, el('span', 'inst-name', i.name));
  if (state) li.append(el('span', 'inst-state', state));
  const unfinished = i.active > 0 ? `, ${i.active} unfinished` : '';
  const what = `${i.downloads} download${i.downloads === 1 ? '' : 's'}${unfinished}`;
  const status = i.self ? "this page's server" : i.live ? 'live' : silenceText(i.name, info);
  li.title = `${i.name}: ${status} · ${what}${i.host ? ` · host ${i.host}` : ''}`;
  return li;
}
