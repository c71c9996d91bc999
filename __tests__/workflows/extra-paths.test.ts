import fs from 'node:fs/promises';
import path from 'node:path';
import { defaultExtraModelPathsFile, loadExtraModelPaths, parseExtraModelPaths } from '../../server/workflows/extra-paths';
import { createLocator, searchDirs } from '../../server/workflows/locate';
import { tempDir } from '../helpers/harness';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir('md-extra-')));
afterEach(() => cleanup());

const put = async (rel: string, content = 'x'): Promise<string> => {
  const abs = path.join(dir, rel);
  await fs.mkdir(path.dirname(abs), { recursive: true });
  await fs.writeFile(abs, content);
  return abs;
};

/** ComfyUI at <dir>/ComfyUI; root A named by an environment variable, root B under a home folder. */
const YAML = `
a:
    base_path: \${ROOT_A}/library
    checkpoints: models/checkpoints/
    clip: models/clip
    loras: |
        models/loras
        models/more-loras

b:
    base_path: ~/ai
    is_default: yes
    unet: unet/
    vae: vae

loose:
    embeddings: relative/embeddings
    upscale_models: $UNSET_VARIABLE/up

empty:
`;

function setup() {
  const comfy = path.join(dir, 'ComfyUI');
  const file = path.join(comfy, 'extra_model_paths.yaml');
  const env = { ROOT_A: path.join(dir, 'root-a') };
  const home = path.join(dir, 'home');
  return { comfy, models: path.join(comfy, 'models'), file, env, home, extra: parseExtraModelPaths(YAML, file, env, home) };
}

test('groups, base_path with an environment variable and ~, multi-line values, legacy names, is_default', () => {
  const { comfy, file, extra } = setup();
  const a = path.join(dir, 'root-a', 'library');
  const b = path.join(dir, 'home', 'ai');
  expect(extra).toEqual([
    { group: 'a', folder: 'checkpoints', dir: path.join(a, 'models/checkpoints'), root: a, isDefault: false },
    { group: 'a', folder: 'text_encoders', dir: path.join(a, 'models/clip'), root: a, isDefault: false },
    { group: 'a', folder: 'loras', dir: path.join(a, 'models/loras'), root: a, isDefault: false },
    { group: 'a', folder: 'loras', dir: path.join(a, 'models/more-loras'), root: a, isDefault: false },
    { group: 'b', folder: 'diffusion_models', dir: path.join(b, 'unet'), root: b, isDefault: true },
    { group: 'b', folder: 'vae', dir: path.join(b, 'vae'), root: b, isDefault: true },
    // No base_path: relative to the YAML's folder; variables are expanded in base_path only, as ComfyUI does.
    { group: 'loose', folder: 'embeddings', dir: path.join(comfy, 'relative/embeddings'), root: comfy, isDefault: false },
    { group: 'loose', folder: 'upscale_models', dir: path.join(comfy, '$UNSET_VARIABLE/up'), root: comfy, isDefault: false },
  ]);
  expect(path.dirname(file)).toBe(comfy);
});

test("search order is ComfyUI's: its own folders (with the legacy ones), extra paths after, is_default ones first", () => {
  const { models, extra, env, home } = setup();
  expect(searchDirs(models, extra, 'diffusion_models').map((d) => d.dir)).toEqual([path.join(home, 'ai/unet'), path.join(models, 'unet'), path.join(models, 'diffusion_models')]);
  expect(searchDirs(models, extra, 'text_encoders').map((d) => d.dir)).toEqual([path.join(models, 'text_encoders'), path.join(models, 'clip'), path.join(env.ROOT_A, 'library/models/clip')]);
  expect(searchDirs(models, extra, 'loras').map((d) => d.dir)).toEqual([
    path.join(models, 'loras'),
    path.join(env.ROOT_A, 'library/models/loras'),
    path.join(env.ROOT_A, 'library/models/more-loras'),
  ]);
});

test('installed files are found in every root, with found_at relative to the root they are in', async () => {
  const { models, extra } = setup();
  await put('ComfyUI/models/checkpoints/here.safetensors', '12345');
  await put('root-a/library/models/more-loras/SDXL/style.safetensors');
  await put('root-a/library/models/clip/t5.safetensors');
  await put('ComfyUI/models/clip/clip_l.safetensors');
  await put('ComfyUI/models/diffusion_models/both.safetensors');
  await put('home/ai/unet/both.safetensors');
  const locator = createLocator(models, extra);
  expect(await locator.locate('checkpoints', 'here.safetensors')).toEqual({ size: 5 });
  expect(await locator.locate('loras', 'SDXL/style.safetensors')).toEqual({ size: 1, foundAt: 'a:models/more-loras/SDXL/style.safetensors' });
  expect(await locator.locate('text_encoders', 't5.safetensors')).toEqual({ size: 1, foundAt: 'a:models/clip/t5.safetensors' });
  expect(await locator.locate('text_encoders', 'clip_l.safetensors')).toEqual({ size: 1, foundAt: 'clip/clip_l.safetensors' });
  // is_default puts b's folder before MODELS_DIR's: ComfyUI loads that copy.
  expect(await locator.locate('diffusion_models', 'both.safetensors')).toEqual({ size: 1, foundAt: 'b:unet/both.safetensors' });
  expect(await locator.locate('loras', 'style.safetensors')).toBeUndefined();
  expect(await locator.locate('vae', 'nothing.safetensors')).toBeUndefined();
});

test('names and folders that would leave the searched folder are never looked up; folders are not files', async () => {
  const { models, extra } = setup();
  await put('ComfyUI/secret.safetensors');
  await fs.mkdir(path.join(models, 'checkpoints', 'a-folder.safetensors'), { recursive: true });
  const locator = createLocator(models, extra);
  for (const [folder, name] of [
    ['checkpoints', '../../secret.safetensors'],
    ['checkpoints', '../secret.safetensors'],
    ['..', 'secret.safetensors'],
    ['checkpoints', path.join(dir, 'ComfyUI/secret.safetensors')],
    ['checkpoints', 'a-folder.safetensors'],
  ]) {
    expect(await locator.locate(folder!, name!)).toBeUndefined();
  }
});

test('reading the file: the default beside MODELS_DIR when present, EXTRA_MODEL_PATHS when set (and then it must exist)', async () => {
  const { models } = setup();
  expect(defaultExtraModelPathsFile(models)).toBe(path.join(dir, 'ComfyUI', 'extra_model_paths.yaml'));
  await expect(loadExtraModelPaths(undefined, models)).resolves.toEqual([]);
  await put('ComfyUI/extra_model_paths.yaml', 'x:\n  base_path: /srv/models\n  loras: loras\n');
  await expect(loadExtraModelPaths(undefined, models)).resolves.toEqual([{ group: 'x', folder: 'loras', dir: '/srv/models/loras', root: '/srv/models', isDefault: false }]);
  await expect(loadExtraModelPaths(path.join(dir, 'nowhere.yaml'), models)).rejects.toMatchObject({ code: 'EXTRA_MODEL_PATHS_MISSING', status: 500, message: expect.stringContaining('nowhere.yaml') });
});

test.each([
  ['not YAML', 'a: [b\n'],
  ['a list at the top', '- a\n- b\n'],
  ['a group that is a string', 'a: models\n'],
])('%s: EXTRA_MODEL_PATHS_INVALID naming the file', (_what, text) => {
  expect(() => parseExtraModelPaths(text, '/etc/comfy/extra_model_paths.yaml')).toThrow(
    expect.objectContaining({ code: 'EXTRA_MODEL_PATHS_INVALID', message: expect.stringContaining('/etc/comfy/extra_model_paths.yaml') }),
  );
});

test('an empty file adds nothing', () => {
  expect(parseExtraModelPaths('', '/x/extra_model_paths.yaml')).toEqual([]);
  expect(parseExtraModelPaths('# only a comment\n', '/x/extra_model_paths.yaml')).toEqual([]);
});
