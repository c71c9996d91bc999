/**
 * The page: wires the live client, the API, the lists, the add form, the workflow section, the
 * catalog, the fleet's instances and the token prompt. The only module with side effects at load.
 */
import type { AddRequest, Entry, ErrorInfo, GroupCommandAnswer, GroupRef } from '../server/protocol/wire.js';
import { groupCommandMessage } from './groups.js';
import { ApiError, createApi, tokenStore } from './api.js';
import { CatalogView, parseCatalog, type CatalogModel } from './catalog.js';
import { elsewhereText, FleetWatch, needsRefresh, type FleetState } from './fleet.js';
import { FleetIndicator } from './fleet-indicator.js';
import { Dashboard, type RowAction } from './render.js';
import { WorkflowView } from './workflow.js';
import { LiveClient, type ConnectionInfo } from './ws-client.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html lacks #${id}`);
  return node as T;
};

/** Offered when `GET /api/folders` cannot be read; the server validates the choice anyway. */
const FALLBACK_FOLDERS = ['checkpoints', 'clip_vision', 'controlnet', 'diffusion_models', 'embeddings', 'loras', 'text_encoders', 'upscale_models', 'vae'];
const FOLDER_KEY = 'model-downloader.folder';

// ---- the token: from ?token= once, then from localStorage -------------------------------------
{
  const params = new URLSearchParams(location.search);
  const given = params.get('token');
  if (given !== null) {
    tokenStore.set(given.trim() || null);
    params.delete('token');
    // Out of the address bar, the history and any screenshot.
    const query = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${query ? `?${query}` : ''}${location.hash}`);
  }
}

const tokenBanner = $('token-banner');
const tokenForm = $<HTMLFormElement>('token-form');
const tokenInput = $<HTMLInputElement>('token-input');
const tokenMsg = $('token-msg');

function askForToken(): void {
  if (!tokenBanner.hidden) return;
  tokenMsg.textContent = tokenStore.get() ? 'The saved token was not accepted.' : '';
  tokenBanner.hidden = false;
  tokenInput.focus();
}

const api = createApi({ token: () => tokenStore.get(), onUnauthorized: askForToken });

// ---- live state --------------------------------------------------------------------------------
const wsUrl = (): string => {
  const url = new URL('/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const token = tokenStore.get();
  if (token) url.searchParams.set('token', token);
  return url.toString();
};
const client = new LiveClient({ url: wsUrl, probe: () => api.probe() });

const commandPath: Record<Exclude<RowAction, 'remove'>, string> = { pause: 'pause', resume: 'resume', cancel: 'cancel', retry: 'retry' };
const dashboard = new Dashboard(
  {
    activeList: $('active-list'),
    finishedList: $('finished-list'),
    activeEmpty: $('active-empty'),
    finishedEmpty: $('finished-empty'),
    summary: $('summary'),
    clearButton: $<HTMLButtonElement>('clear-completed'),
  },
  async (entry, action) => {
    const id = encodeURIComponent(entry.id);
    // Fleet mode: another instance's download is handed to it (202, `forwarded_to`).
    const { body } =
      action === 'remove'
        ? await api.request<{ forwarded_to?: string }>('DELETE', `/api/downloads/${id}`)
        : await api.request<{ forwarded_to?: string }>('POST', `/api/downloads/${id}/${commandPath[action]}`);
    return typeof body?.forwarded_to === 'string' ? { forwardedTo: body.forwarded_to } : undefined;
  },
  async (groupId, action) => {
    const { body } = await api.request<GroupCommandAnswer>('POST', `/api/groups/${encodeURIComponent(groupId)}/${action}`);
    return groupCommandMessage(action, body);
  },
);

const catalog = new CatalogView($('catalog'), $('catalog-sets'), async (model: CatalogModel) => {
  await api.request('POST', '/download', { model_set: model.setId, model_id: model.id });
});

const workflow = new WorkflowView(
  {
    section: $('workflow'),
    name: $('wf-name'),
    hint: $('wf-hint'),
    file: $<HTMLInputElement>('wf-file'),
    choose: $<HTMLButtonElement>('wf-choose'),
    pasteToggle: $<HTMLButtonElement>('wf-paste-toggle'),
    close: $<HTMLButtonElement>('wf-close'),
    pasteForm: $<HTMLFormElement>('wf-paste'),
    text: $<HTMLTextAreaElement>('wf-text'),
    msg: $('wf-msg'),
    plan: $('wf-plan'),
    counts: $('wf-counts'),
    download: $<HTMLButtonElement>('wf-download'),
    rows: $('wf-rows'),
  },
  api,
);

// Messages arrive at the server's push rate; the DOM is touched once per frame for all of them,
// and not at all when nothing changed.
const dirty = new Set<string>();
let resetPending = false;
let framePending = false;
function flush(): void {
  framePending = false;
  const ids = [...dirty];
  dirty.clear();
  const reset = resetPending;
  resetPending = false;
  dashboard.render(client.downloads, ids, reset);
  catalog.render(client.downloads);
  // Until the first snapshot (or poll) the entries are not the server's yet.
  workflow.render(client.downloads, client.seq >= 0 || client.connection.state === 'polling');
  // An instance the indicator does not know, or one gone silent (or back): ask the server again.
  if (needsRefresh(fleet.state, (reset ? [...client.downloads.keys()] : ids).map((id) => client.downloads.get(id)))) fleet.refresh();
}
function schedule(ids: Iterable<string>, reset: boolean): void {
  for (const id of ids) dirty.add(id);
  resetPending ||= reset;
  if (framePending) return;
  framePending = true;
  // A background tab gets no animation frames; a slow timer keeps its title's percentage current.
  if (document.hidden) setTimeout(flush, 1000);
  else requestAnimationFrame(flush);
}
client.on('change', (change) => schedule(change.ids, change.reset));

// ---- fleet mode: the instances indicator, and the rows' instances ------------------------------
const fleetIndicator = new FleetIndicator({ root: $('fleet'), list: $('fleet-list') });
const fleet = new FleetWatch({
  load: async () => (await api.request<unknown>('GET', '/api/fleet')).body,
  visible: () => !document.hidden,
  onChange: (state: FleetState) => {
    fleetIndicator.render(state);
    dashboard.fleet = state.mode === 'on' ? state.info : undefined;
    // The rows of the fleet say since when their instance is silent, and what their buttons do.
    schedule([...client.downloads.values()].filter((e) => e.instance !== undefined).map((e) => e.id), false);
  },
});
// Asked with every snapshot (a connection, a server restarted maybe in or out of fleet mode), when
// polling begins, and when the tab is shown again; FleetWatch spaces the requests.
client.on('message', (m) => {
  if (m.type === 'snapshot') fleet.refresh();
});

// ---- connection indicator ----------------------------------------------------------------------
const conn = $('conn');
const connText = $('conn-text');
const CONNECTION_TEXT: Record<ConnectionInfo['state'], [string, string]> = {
  connecting: ['Connecting…', 'Opening the live connection'],
  live: ['Live', 'Updates arrive as they happen'],
  reconnecting: ['Reconnecting…', 'The live connection dropped; reconnecting'],
  polling: ['Polling every 2 s', 'The WebSocket cannot connect (a proxy may block it): reading /status every 2 s instead'],
  offline: ['Offline', 'The server does not answer; still trying'],
  unauthorized: ['Needs token', 'The server wants its API token'],
  closed: ['Closed', 'Not connected'],
};
client.on('state', (info) => {
  if (info.state === 'polling') fleet.refresh();
  const [text, title] = CONNECTION_TEXT[info.state];
  conn.dataset.state = info.state;
  document.body.dataset.conn = info.state;
  connText.textContent = text;
  conn.title = info.retryInMs && info.state !== 'live' && info.state !== 'polling' ? `${title}; next attempt in ${Math.ceil(info.retryInMs / 1000)} s` : title;
  if (info.state === 'unauthorized') askForToken();
});

// ---- add form ----------------------------------------------------------------------------------
const form = $<HTMLFormElement>('add-form');
const folderSelect = $<HTMLSelectElement>('add-folder');
const formMsg = $('add-msg');
const submit = $<HTMLButtonElement>('add-submit');

function showFormMessage(text: string, tone: 'error' | 'ok' | 'note' | '', code?: string): void {
  formMsg.textContent = text;
  formMsg.dataset.tone = tone;
  if (code) formMsg.dataset.code = code;
  else delete formMsg.dataset.code;
  formMsg.hidden = text === '';
}

/** Which field an API error code is about, to mark it invalid. */
function fieldOf(code: string): string | undefined {
  if (/URL/.test(code)) return 'url';
  if (/FOLDER/.test(code)) return 'folder';
  if (/FILENAME|PATH|DEST/.test(code)) return 'filename';
  if (/SHA256/.test(code)) return 'sha256';
  return undefined;
}

function markInvalid(field: string | undefined): void {
  for (const input of form.querySelectorAll<HTMLInputElement | HTMLSelectElement>('input, select')) {
    if (input.name === field) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

/** `POST /api/downloads` answers one download, or a group for a Hugging Face repository or folder. */
type AddAnswer =
  | { status?: string; download: Entry }
  | { group: GroupRef; downloads: Entry[]; skipped?: Array<{ folder: string; filename: string; error: ErrorInfo }> };

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const value = (name: string): string => String(data.get(name) ?? '').trim();
  const request: AddRequest = { url: value('url'), folder: value('folder') };
  if (value('filename')) request.filename = value('filename');
  if (value('sha256')) request.sha256 = value('sha256');
  if (!request.url) {
    markInvalid('url');
    showFormMessage('Paste the URL of a model file first.', 'error');
    return;
  }
  submit.disabled = true;
  showFormMessage('', '');
  api
    .request<AddAnswer>('POST', '/api/downloads', request)
    .then(({ status, body }) => {
      markInvalid(undefined);
      try {
        localStorage.setItem(FOLDER_KEY, request.folder);
      } catch {
        // storage disabled: the default folder is fine
      }
      if ('group' in body) {
        // A Hugging Face repository or folder: one download per file, as one group.
        const n = body.downloads.length;
        const skipped = body.skipped ?? [];
        const why = skipped.length > 0 ? ` ${skipped.length} not started (${skipped[0]!.filename}: ${skipped[0]!.error.message}${skipped.length > 1 ? '; …' : ''}).` : '';
        showFormMessage(`Started ${n} file${n === 1 ? '' : 's'} of ${body.group.name}.${why}`, n === 0 ? 'note' : 'ok');
        form.reset();
        folderSelect.value = request.folder;
      } else if (status === 200 && body.status === 'already_exists') {
        showFormMessage(`${body.download.dest} is already on disk; nothing to download.`, 'note');
      } else {
        showFormMessage(`Added ${body.download.dest}.`, 'ok');
        form.reset();
        folderSelect.value = request.folder;
      }
    })
    .catch((err: unknown) => {
      const e = err as ApiError;
      // Fleet mode: another instance is downloading this very file: nothing wrong with the form.
      const elsewhere = e instanceof ApiError ? elsewhereText(e.code, e.message, e.body) : undefined;
      markInvalid(e instanceof ApiError && !elsewhere ? fieldOf(e.code) : undefined);
      showFormMessage(elsewhere ?? e.message, elsewhere ? 'note' : 'error', e instanceof ApiError ? e.code : undefined);
    })
    .finally(() => {
      submit.disabled = false;
    });
});

async function loadFolders(): Promise<void> {
  let folders = FALLBACK_FOLDERS;
  try {
    const { body } = await api.request<{ folders: string[] }>('GET', '/api/folders');
    if (Array.isArray(body.folders) && body.folders.length > 0) folders = body.folders;
  } catch {
    // keep the fallback; the server checks the folder anyway
  }
  let preferred = folderSelect.value;
  try {
    preferred ||= localStorage.getItem(FOLDER_KEY) ?? '';
  } catch {
    // no storage
  }
  folderSelect.replaceChildren(...folders.map((f) => new Option(f, f)));
  folderSelect.value = folders.includes(preferred) ? preferred : folders.includes('checkpoints') ? 'checkpoints' : folders[0]!;
}

// ---- catalog: shown only when the server has one -----------------------------------------------
async function loadCatalog(): Promise<void> {
  try {
    const { body } = await api.request<unknown>('GET', '/api/catalog');
    catalog.setCatalog(parseCatalog(body), client.downloads);
  } catch {
    catalog.setCatalog(undefined, client.downloads); // 404 before the catalog exists, or unreadable
  }
}

// ---- clear completed ---------------------------------------------------------------------------
const clearButton = $<HTMLButtonElement>('clear-completed');
const finishedMsg = $('finished-msg');
clearButton.addEventListener('click', () => {
  clearButton.disabled = true;
  finishedMsg.hidden = true;
  api.request('POST', '/clear_completed').catch((err: unknown) => {
    finishedMsg.textContent = (err as Error).message;
    finishedMsg.hidden = false;
    clearButton.disabled = false;
  });
});

// ---- token prompt ------------------------------------------------------------------------------
tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) return;
  tokenStore.set(token);
  tokenInput.value = '';
  tokenBanner.hidden = true;
  client.reconnectNow();
  void loadFolders();
  void loadCatalog();
});

// ---- start -------------------------------------------------------------------------------------
client.start();
void loadFolders();
void loadCatalog();
// Come back at once rather than at the end of a backoff.
window.addEventListener('online', () => {
  if (client.connection.state !== 'live') client.reconnectNow();
});
document.addEventListener('visibilitychange', () => {
  const state = client.connection.state;
  if (!document.hidden && (state === 'reconnecting' || state === 'offline')) client.reconnectNow();
  if (!document.hidden && fleet.state.mode === 'on') fleet.refresh();
});
