import { extractModels, type WantedModel } from '../../server/workflows/extract';
import { parseWorkflow, parseWorkflowBytes } from '../../server/workflows/parse';
import { crc32, readPngText } from '../../server/workflows/png';
import zlib from 'node:zlib';
import { apiWorkflow, node, png, SHA, subgraphWorkflow, topLevelWorkflow } from './fixtures';

const models = (wf: unknown): WantedModel[] => extractModels(parseWorkflow(wf));
const byName = (list: WantedModel[]) => Object.fromEntries(list.map((m) => [`${m.folder}/${m.name}`, m]));

describe('UI format, top level', () => {
  const list = models(topLevelWorkflow());
  const found = byName(list);

  test('every used model once, in node order, with the nodes that use it', () => {
    expect(list.map((m) => `${m.folder}/${m.name}`)).toEqual([
      'checkpoints/sd15/dream.safetensors',
      'loras/SDXL/detail-tweaker.safetensors',
      'text_encoders/clip_l.safetensors',
      'text_encoders/t5xxl_fp8.safetensors',
      'sams/sam2_hiera_small.pt',
      'upscale_models/4x-Upscaler.pth',
    ]);
    // Two loaders name the same file, one with a Windows path: one model, both nodes.
    expect(found['checkpoints/sd15/dream.safetensors']!.nodes).toEqual([
      { id: 1, type: 'CheckpointLoaderSimple' },
      { id: 2, type: 'CheckpointLoaderSimple' },
    ]);
    expect(found['upscale_models/4x-Upscaler.pth']!.nodes).toEqual([]);
  });

  test('links give URLs and sha256 digests; links without a URL still name a model; unused links are dropped', () => {
    expect(found['checkpoints/sd15/dream.safetensors']).toMatchObject({ url: 'https://huggingface.co/org/dream/resolve/main/dream.safetensors', sha256: SHA });
    expect(found['text_encoders/t5xxl_fp8.safetensors']!.url).toBe('https://huggingface.co/org/enc/resolve/main/t5xxl_fp8.safetensors');
    expect(found['text_encoders/clip_l.safetensors']).toEqual({ folder: 'text_encoders', name: 'clip_l.safetensors', nodes: [{ id: 6, type: 'DualCLIPLoader' }] });
    expect(found['loras/SDXL/detail-tweaker.safetensors']!.url).toBeUndefined();
    // A node the table does not know is covered by its link, in the link's folder.
    expect(found['sams/sam2_hiera_small.pt']).toMatchObject({ url: 'https://example.com/sam2/sam2_hiera_small.pt', nodes: [{ id: 9, type: 'SAM2Segmenter' }] });
    expect(JSON.stringify(list)).not.toContain('unused.safetensors');
  });

  test('bypassed (mode 4) and muted (mode 2) loaders, and VAELoader built-ins, need nothing', () => {
    const all = JSON.stringify(list);
    for (const absent of ['bypassed-vae', 'muted-unet', 'taesd']) expect(all).not.toContain(absent);
  });

  test('widgets_values kept by name (an object) are read by name', () => {
    const wf = { nodes: [node(1, 'UNETLoader', { unet_name: 'flux\\dev.safetensors', weight_dtype: 'default' })], links: [], version: 0.4 };
    expect(models(wf)).toEqual([{ folder: 'diffusion_models', name: 'flux/dev.safetensors', nodes: [{ id: 1, type: 'UNETLoader' }] }]);
  });
});

describe('UI format, subgraphs', () => {
  const list = models(subgraphWorkflow());
  const found = byName(list);

  test('values promoted through subgraph inputs reach the loaders, nested two deep, per instance', () => {
    expect(found['checkpoints/outer-a.safetensors']!.nodes).toEqual([{ id: '10:1', type: 'CheckpointLoaderSimple' }]);
    expect(found['loras/outer-lora-a.safetensors']!.nodes).toEqual([{ id: '10:2:4', type: 'LoraLoaderModelOnly' }]);
    // An older instance without `inputs`: the definition says which inputs are widgets.
    expect(found['checkpoints/outer-b.safetensors']!.nodes).toEqual([{ id: '12:1', type: 'CheckpointLoaderSimple' }]);
    expect(found['loras/outer-lora-b.safetensors']!.nodes).toEqual([{ id: '12:2:4', type: 'LoraLoaderModelOnly' }]);
  });

  test('a widget promoted with proxyWidgets takes the instance value', () => {
    expect(found['vae/promoted-vae.safetensors']!.nodes).toEqual([{ id: '20:5', type: 'VAELoader' }]);
  });

  test("a loader's own value counts when nothing is promoted; one model for every instance", () => {
    expect(found['diffusion_models/inner-unet.safetensors']).toEqual({
      folder: 'diffusion_models',
      name: 'inner-unet.safetensors',
      url: 'https://huggingface.co/org/unet/resolve/main/inner-unet.safetensors',
      nodes: [
        { id: '10:2:6', type: 'UNETLoader' },
        { id: '12:2:6', type: 'UNETLoader' },
      ],
    });
  });

  test('stale inner values, a bypassed instance and a bypassed node inside a subgraph are left out', () => {
    expect(list).toHaveLength(6);
    const all = JSON.stringify(list);
    for (const absent of ['stale-', 'inner-vae', 'bypassed-outer', 'bypassed-lora', 'bypassed-controlnet', '"11:']) expect(all).not.toContain(absent);
  });

  test("older instances: a seed's control_after_generate value among the instance's values, a proxyWidgets entry naming a subgraph input (\"-1\")", () => {
    const def = (id: string, inputs: unknown[], nodes: unknown[], links: unknown[]) => ({ id, name: id, inputs, outputs: [], nodes, links });
    const loaderFed = (id: number, type: string, widget: string, link: number) => node(id, type, ['inner.safetensors'], { inputs: [{ name: widget, type: 'COMBO', widget: { name: widget }, link }] });
    const wf = {
      nodes: [
        node(1, 'seeded', [42, 'randomize', 'after-seed.safetensors']),
        node(2, 'proxied', ['via-input-name.safetensors'], { inputs: [{ name: 'model_file', type: 'COMBO', link: null }], properties: { proxyWidgets: [['-1', 'model_file']] } }),
      ],
      links: [],
      definitions: {
        subgraphs: [
          def(
            'seeded',
            [{ name: 'seed', linkIds: [1] }, { name: 'ckpt_name', linkIds: [2] }],
            [node(5, 'KSampler', [0, 'fixed'], { inputs: [{ name: 'seed', type: 'INT', widget: { name: 'seed' }, link: 1 }] }), loaderFed(6, 'CheckpointLoaderSimple', 'ckpt_name', 2)],
            [{ id: 1, origin_id: -10, origin_slot: 0, target_id: 5, target_slot: 0 }, { id: 2, origin_id: -10, origin_slot: 1, target_id: 6, target_slot: 0 }],
          ),
          def('proxied', [{ name: 'model_file', linkIds: [3] }], [loaderFed(7, 'UpscaleModelLoader', 'model_name', 3)], [{ id: 3, origin_id: -10, origin_slot: 0, target_id: 7, target_slot: 0 }]),
        ],
      },
      version: 1,
    };
    expect(models(wf).map((m) => `${m.folder}/${m.name} ${m.nodes[0]!.id}`)).toEqual(['checkpoints/after-seed.safetensors 1:6', 'upscale_models/via-input-name.safetensors 2:7']);
  });

  test('a subgraph that contains itself does not loop', () => {
    const wf = subgraphWorkflow() as { definitions: { subgraphs: Array<{ nodes: unknown[]; id: string }> } };
    const a = wf.definitions.subgraphs[0]!;
    a.nodes.push(node(9, a.id));
    expect(models(wf).length).toBeGreaterThan(0);
  });
});

describe('API format', () => {
  test('names from inputs; a linked input is a name only when a primitive gives it', () => {
    expect(models(apiWorkflow())).toEqual([
      { folder: 'checkpoints', name: 'api/model.safetensors', nodes: [{ id: '1', type: 'CheckpointLoaderSimple' }] },
      { folder: 'loras', name: 'from-primitive.safetensors', nodes: [{ id: '2', type: 'LoraLoader' }] },
    ]);
  });

  test('a /prompt body and a { workflow } wrapper are read too', () => {
    expect(parseWorkflow({ prompt: apiWorkflow(), client_id: 'x' }).format).toBe('api');
    expect(parseWorkflow({ prompt: apiWorkflow(), extra_data: { extra_pnginfo: { workflow: topLevelWorkflow() } } }).format).toBe('ui');
    expect(parseWorkflow({ workflow: subgraphWorkflow() }).format).toBe('ui');
  });
});

describe('not a workflow', () => {
  test.each([
    ['an object of something else', { hello: 'world' }],
    ['an array', [1, 2]],
    ['a string', 'workflow'],
    ['an object whose values lack class_type', { '1': { inputs: {} } }],
  ])('%s: 400 NOT_A_WORKFLOW with a message saying what is expected', (_what, data) => {
    expect(() => parseWorkflow(data)).toThrow(expect.objectContaining({ code: 'NOT_A_WORKFLOW', status: 400, message: expect.stringContaining('not a ComfyUI workflow') }));
  });

  test('bytes that are neither PNG nor JSON', () => {
    expect(() => parseWorkflowBytes(Buffer.from('GIF89a...'))).toThrow(expect.objectContaining({ code: 'INVALID_JSON', status: 400 }));
  });
});

describe('PNG', () => {
  const ui = JSON.stringify(topLevelWorkflow());
  const api = JSON.stringify(apiWorkflow());

  test('the CRC is the standard one', () => {
    const data = Buffer.from('IEND');
    expect(crc32(data)).toBe(zlib.crc32(data) >>> 0);
  });

  test('tEXt: the UI workflow is preferred over the API prompt', () => {
    const wf = parseWorkflowBytes(png([{ type: 'tEXt', keyword: 'prompt', text: api }, { type: 'tEXt', keyword: 'workflow', text: ui }]));
    expect(wf.format).toBe('ui');
    expect(extractModels(wf).map((m) => m.name)).toContain('sd15/dream.safetensors');
  });

  test('iTXt, plain and compressed, is UTF-8', () => {
    const named = JSON.stringify({ nodes: [node(1, 'LoraLoader', ['風景/modèle.safetensors', 1, 1])], links: [] });
    for (const compressed of [false, true]) {
      const wf = parseWorkflowBytes(png([{ type: 'iTXt', keyword: 'workflow', text: named, compressed }]));
      expect(extractModels(wf)).toEqual([{ folder: 'loras', name: '風景/modèle.safetensors', nodes: [{ id: 1, type: 'LoraLoader' }] }]);
    }
  });

  test('zTXt with only the API prompt gives the API graph', () => {
    const wf = parseWorkflowBytes(png([{ type: 'zTXt', keyword: 'prompt', text: api }]));
    expect(wf.format).toBe('api');
    expect(extractModels(wf).map((m) => m.name)).toEqual(['api/model.safetensors', 'from-primitive.safetensors']);
  });

  test('a broken `workflow` chunk falls back to `prompt`', () => {
    expect(parseWorkflowBytes(png([{ type: 'tEXt', keyword: 'workflow', text: '{oops' }, { type: 'tEXt', keyword: 'prompt', text: api }])).format).toBe('api');
  });

  test('a PNG without a workflow: 400 that suggests --disable-metadata', () => {
    const bytes = png([{ type: 'tEXt', keyword: 'parameters', text: 'a cat, Steps: 20' }]);
    expect(readPngText(bytes).get('parameters')).toBe('a cat, Steps: 20');
    expect(() => parseWorkflowBytes(bytes)).toThrow(expect.objectContaining({ code: 'NO_WORKFLOW_IN_PNG', status: 400, message: expect.stringContaining('--disable-metadata') }));
  });

  test('a damaged PNG (bad CRC, cut short) is refused as such', () => {
    const good = png([{ type: 'tEXt', keyword: 'workflow', text: ui }]);
    const flipped = Buffer.from(good);
    flipped[60] ^= 0xff; // inside the tEXt chunk's text
    expect(() => parseWorkflowBytes(flipped)).toThrow(expect.objectContaining({ code: 'INVALID_PNG', message: expect.stringContaining('CRC') }));
    expect(() => parseWorkflowBytes(good.subarray(0, good.length - 20))).toThrow(expect.objectContaining({ code: 'INVALID_PNG' }));
  });

  test('a compressed chunk that inflates past the limit is refused', () => {
    const bytes = png([{ type: 'zTXt', keyword: 'workflow', text: ' '.repeat(200_000) }]);
    expect(() => readPngText(bytes, { maxTextBytes: 100_000 })).toThrow(expect.objectContaining({ code: 'PNG_TEXT_TOO_LARGE' }));
  });
});
