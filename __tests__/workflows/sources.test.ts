import fs from 'node:fs/promises';
import path from 'node:path';
import type { CatalogData } from '../../server/catalog/catalog';
import { mirrorUrl } from '../../server/sources/mirror';
import { loadModelList, parseModelList, parseSize } from '../../server/workflows/model-list';
import { catalogSources, indexSources } from '../../server/workflows/source-index';
import { tempDir } from '../helpers/harness';

/** Entries in the shape of ComfyUI-Manager's model-list.json (fields it has that we do not use included). */
const MODEL_LIST = {
  models: [
    { name: 'Upscaler x4', type: 'upscale', base: 'upscale', save_path: 'default', description: 'd', reference: 'r', filename: 'Up_x4.pth', url: 'https://huggingface.co/u/up/resolve/main/Up_x4.pth', size: '67.0MB' },
    { name: 'Video model', type: 'checkpoint', base: 'SVD', save_path: 'checkpoints/SVD', filename: 'video.safetensors', url: 'https://huggingface.co/s/v/resolve/main/video.safetensors', size: '9.56GB' },
    { name: 'Text encoder', type: 'clip', base: 'T5', save_path: 'default', filename: 't5_small.safetensors', url: 'https://example.com/t5_small.safetensors', size: 1234 },
    { name: 'Old UNet', type: 'unet', base: 'x', save_path: 'unet/old', filename: 'old.safetensors', url: 'https://example.com/old.safetensors' },
    { name: 'Escape', type: 'lora', base: 'x', save_path: '../../etc', filename: 'evil.safetensors', url: 'https://example.com/evil.safetensors' },
    { name: 'Node data', type: 'x', base: 'x', save_path: 'custom_nodes/Some-Node/data', filename: 'node.bin', url: 'https://example.com/node.bin' },
    { name: 'Unknown type', type: 'deepbump', base: 'x', save_path: 'default', filename: 'bump.onnx', url: 'https://example.com/bump.onnx' },
    { name: 'No URL', type: 'lora', base: 'x', save_path: 'default', filename: 'nourl.safetensors', url: '' },
    { name: 'Not http', type: 'lora', base: 'x', save_path: 'default', filename: 'ftp.safetensors', url: 'ftp://example.com/ftp.safetensors' },
  ],
};

test('model-list.json: "default" save paths by type, other save paths as folder + subfolders, sizes in decimal units', () => {
  expect(parseModelList(MODEL_LIST)).toEqual([
    { folder: 'upscale_models', name: 'Up_x4.pth', url: 'https://huggingface.co/u/up/resolve/main/Up_x4.pth', size: 67_000_000 },
    { folder: 'checkpoints', name: 'SVD/video.safetensors', url: 'https://huggingface.co/s/v/resolve/main/video.safetensors', size: 9_560_000_000 },
    { folder: 'text_encoders', name: 't5_small.safetensors', url: 'https://example.com/t5_small.safetensors', size: 1234 },
    { folder: 'diffusion_models', name: 'old/old.safetensors', url: 'https://example.com/old.safetensors' },
    // As the Manager does: `..` goes to models/etc; custom_nodes/… is outside models/ (found by file name only).
    { folder: 'etc', name: 'evil.safetensors', url: 'https://example.com/evil.safetensors' },
    { folder: undefined, name: 'node.bin', url: 'https://example.com/node.bin' },
    { folder: 'etc', name: 'bump.onnx', url: 'https://example.com/bump.onnx' },
  ]);
  expect([parseSize('25KB'), parseSize('4.71 mb'), parseSize('big'), parseSize(-1)]).toEqual([25_000, 4_710_000, undefined, undefined]);
  expect(() => parseModelList({ custom_nodes: [] }, 'list.json')).toThrow(expect.objectContaining({ code: 'MODEL_LIST_INVALID', message: expect.stringContaining('list.json') }));
});

test('loadModelList reads the file each time; a missing or broken file is a clear error', async () => {
  const { dir, cleanup } = await tempDir('md-list-');
  try {
    const file = path.join(dir, 'model-list.json');
    await expect(loadModelList(file)).rejects.toMatchObject({ code: 'MODEL_LIST_INVALID', message: expect.stringContaining('does not exist') });
    await fs.writeFile(file, '{"models": [');
    await expect(loadModelList(file)).rejects.toMatchObject({ code: 'MODEL_LIST_INVALID', message: expect.stringContaining('JSON') });
    await fs.writeFile(file, JSON.stringify(MODEL_LIST));
    expect(await loadModelList(file)).toHaveLength(7);
  } finally {
    await cleanup();
  }
});

test('lookups: folder and name, then the file name in the same folder, then in any folder', () => {
  const index = indexSources([
    { folder: 'checkpoints', name: 'SVD/video.safetensors', url: 'https://a/1' },
    { folder: 'vae', name: 'ae.safetensors', url: 'https://a/vae' },
    { folder: 'diffusion_models', name: 'ae.safetensors', url: 'https://a/unet-ae' },
    { folder: 'clip', name: 'legacy.safetensors', url: 'https://a/legacy' },
    { name: 'node.bin', url: 'https://a/node' },
  ]);
  expect(index.find('checkpoints', 'SVD/video.safetensors')?.url).toBe('https://a/1');
  expect(index.find('checkpoints', 'video.safetensors')?.url).toBe('https://a/1');
  expect(index.find('diffusion_models', 'ae.safetensors')?.url).toBe('https://a/unet-ae');
  expect(index.find('unet', 'ae.safetensors')?.url).toBe('https://a/unet-ae'); // legacy names on both sides
  expect(index.find('text_encoders', 'legacy.safetensors')?.url).toBe('https://a/legacy');
  expect(index.find('loras', 'ae.safetensors')?.url).toBe('https://a/vae');
  expect(index.find('sams', 'node.bin')?.url).toBe('https://a/node');
  expect(index.find('loras', 'nothing.safetensors')).toBeUndefined();
});

test('catalog models become sources with their digest and gating', () => {
  const data = {
    s: {
      name: 'S',
      models: {
        a: { name: 'A', url: 'https://huggingface.co/o/a/resolve/main/a.safetensors', path: 'loras/flux/a.safetensors', description: '', sha256: 'AB'.repeat(32), gated: true },
        b: { name: 'B', url: 'https://e.com/b', path: 'no-folder', description: '' },
      },
    },
  } as unknown as CatalogData;
  expect(catalogSources(data)).toEqual([{ folder: 'loras', name: 'flux/a.safetensors', url: 'https://huggingface.co/o/a/resolve/main/a.safetensors', sha256: 'ab'.repeat(32), gated: true }]);
});

describe('mirrors', () => {
  const defaults = { hfEndpoint: 'https://huggingface.co', civitaiEndpoint: 'https://civitai.com' };
  const mirrors = { hfEndpoint: 'https://hf-mirror.example/prefix', civitaiEndpoint: 'http://127.0.0.1:9000' };

  test('huggingface.co and civitai.com URLs go to the endpoints, same path and query', () => {
    expect(mirrorUrl('https://huggingface.co/o/r/resolve/main/x.safetensors?download=true', mirrors)).toBe('https://hf-mirror.example/prefix/o/r/resolve/main/x.safetensors?download=true');
    expect(mirrorUrl('https://civitai.com/api/download/models/123?type=Model', mirrors)).toBe('http://127.0.0.1:9000/api/download/models/123?type=Model');
    expect(mirrorUrl('https://www.civitai.com/api/download/models/1', mirrors)).toBe('http://127.0.0.1:9000/api/download/models/1');
  });

  test('other hosts, look-alike hosts and the default endpoints are left alone', () => {
    for (const url of ['https://example.com/huggingface.co/x', 'https://huggingface.co.evil.example/x', 'https://cdn-lfs.huggingface.co/x', 'not a url']) {
      expect(mirrorUrl(url, mirrors)).toBe(url);
    }
    expect(mirrorUrl('https://huggingface.co/o/r/resolve/main/x', defaults)).toBe('https://huggingface.co/o/r/resolve/main/x');
  });
});
