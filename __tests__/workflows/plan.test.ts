import path from 'node:path';
import { createLocator } from '../../server/workflows/locate';
import { planModels, startable, type PlanDeps, type Probe } from '../../server/workflows/plan';
import type { WantedModel } from '../../server/workflows/extract';
import { tempDir } from '../helpers/harness';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir('md-planunit-')));
afterEach(() => cleanup());

const wanted = (folder: string, name: string, url?: string): WantedModel => ({ folder, name, ...(url ? { url } : {}), nodes: [{ id: 1, type: 'X' }] });

function deps(probe: Probe, extra: Partial<PlanDeps> = {}): PlanDeps {
  const modelsDir = path.join(dir, 'models');
  return { modelsDir, locator: createLocator(modelsDir, []), download: () => undefined, probe, mirror: (u) => u, ...extra };
}

test('a probe that fails or never answers leaves the size unknown; the plan still answers', async () => {
  const never: Probe = () => new Promise(() => undefined);
  const failing: Probe = async () => {
    throw new Error('connection refused');
  };
  const models = [wanted('loras', 'a.safetensors', 'https://example.com/a.safetensors')];
  for (const probe of [never, failing]) {
    const plan = await planModels(models, deps(probe, { probeTimeoutMs: 50 }));
    expect(plan.models[0]).toMatchObject({ state: 'missing', url: 'https://example.com/a.safetensors' });
    expect(plan.models[0]!.size).toBeUndefined();
    expect(plan.missing_bytes).toBe(0);
  }
});

test('probes run at most probeConcurrency at once, once per URL', async () => {
  let running = 0;
  let most = 0;
  const seen: string[] = [];
  const probe: Probe = async (url) => {
    seen.push(url);
    most = Math.max(most, ++running);
    await new Promise((r) => setImmediate(r));
    running--;
    return { size: 1 };
  };
  const models = Array.from({ length: 10 }, (_, i) => wanted('loras', `m${i}.safetensors`, `https://example.com/m${i % 5}.safetensors`));
  const plan = await planModels(models, deps(probe, { probeConcurrency: 2 }));
  expect(most).toBe(2);
  expect(seen).toHaveLength(5);
  expect(plan.missing_bytes).toBe(10);
});

test("workflow URLs the service would refuse are not used; credentials are not shown; startable() is what download starts", async () => {
  const probe: Probe = async () => ({});
  const plan = await planModels(
    [
      wanted('loras', 'file.safetensors', 'file:///etc/passwd'),
      wanted('loras', 'meta.safetensors', 'http://169.254.169.254/latest/meta-data'),
      wanted('loras', 'SDXL/tok.safetensors', 'https://civitai.com/api/download/models/1?token=secret&type=Model'),
      wanted('loras', 'bad|name.safetensors', 'https://example.com/bad.safetensors'),
    ],
    deps(probe),
  );
  expect(plan.models.map((m) => [m.state, m.url])).toEqual([
    ['no_source', null],
    ['no_source', null],
    ['missing', 'https://civitai.com/api/download/models/1?type=Model'],
    ['missing', 'https://example.com/bad.safetensors'],
  ]);
  expect(plan.models[3]!.error?.code).toBe('INVALID_PATH');
  expect(startable(plan)).toEqual([{ url: 'https://civitai.com/api/download/models/1?type=Model', folder: 'loras/SDXL', filename: 'tok.safetensors' }]);
});
