import crypto from 'node:crypto';
import { loadConfig } from '../../server/config';
import { createSourceMetadata } from '../../server/sources';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub';

const HF_TOKEN = 'hf_TOKENfromTheEnvironment0001';
const CIVITAI_TOKEN = 'civitaiTOKENfromTheEnvironment02';

let hub: FakeHub;
afterEach(async () => {
  await hub?.close();
});

test('from the configuration: each token to its own host only, never the other', async () => {
  hub = await startFakeHub({ hfToken: HF_TOKEN, civitaiToken: CIVITAI_TOKEN });
  hub.hf.repo('org/model');
  hub.hf.commit('org/model', { 'm.safetensors': crypto.randomBytes(100), 'config.json': '{}' });
  hub.civitai.model({ id: 1, name: 'M', versions: [{ id: 11, name: 'v1', files: [{ name: 'm.safetensors', data: crypto.randomBytes(100) }] }] });
  const config = loadConfig({ HF_ENDPOINT: hub.hf.url, HF_TOKEN, CIVITAI_ENDPOINT: hub.civitai.url, CIVITAI_TOKEN }, '/tmp');
  const meta = createSourceMetadata(config);

  const hfRef = meta.hf.parse(new URL(`${hub.hf.url}/org/model`))!;
  expect((await meta.hf.list(hfRef, { folder: 'checkpoints' })).files).toHaveLength(2);
  const civRef = meta.civitai.parse(new URL(`${hub.civitai.url}/models/1`))!;
  expect((await meta.civitai.resolve(civRef)).filename).toBe('m.safetensors');

  // Not each other's URLs either.
  expect(meta.hf.parse(new URL(`${hub.civitai.url}/org/model`))).toBeUndefined();
  expect(meta.civitai.parse(new URL(`${hub.hf.url}/models/1`))).toBeUndefined();

  for (const r of hub.hf.api.requests) expect(r.headers.authorization).toBe(`Bearer ${HF_TOKEN}`);
  for (const r of hub.civitai.api.requests) expect(r.headers.authorization).toBe(`Bearer ${CIVITAI_TOKEN}`);
  expect([hub.hf.api.requests.length, hub.civitai.api.requests.length]).toEqual([2, 1]); // revision + one tree page; the model
});
