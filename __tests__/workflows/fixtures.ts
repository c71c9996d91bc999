/**
 * The project's own workflow fixtures, written for these tests in the shapes ComfyUI saves
 * (studied from Comfy-Org/workflow_templates; no template is copied), and a PNG writer.
 */
import zlib from 'node:zlib';

type Json = Record<string, unknown>;

/** A UI-format node. `widgets` are its `widgets_values`. */
export function node(id: number, type: string, widgets: unknown[] | Json = [], extra: Json = {}): Json {
  return { id, type, pos: [0, 0], size: [300, 100], flags: {}, order: 0, mode: 0, inputs: [], outputs: [], properties: { 'Node name for S&R': type }, widgets_values: widgets, ...extra };
}

const HF = 'https://huggingface.co';
export const SHA = 'a'.repeat(64);

/**
 * Schema 0.4, top level only: links with and without URLs, a link no widget uses, a Windows path,
 * one checkpoint in two loaders, a bypassed and a muted loader, the workflow's own `models[]`.
 */
export function topLevelWorkflow(): Json {
  return {
    id: 'b0c5bd33-0000-4000-8000-000000000001',
    revision: 0,
    last_node_id: 9,
    last_link_id: 2,
    nodes: [
      node(1, 'CheckpointLoaderSimple', ['sd15/dream.safetensors'], {
        properties: { models: [{ name: 'dream.safetensors', url: `${HF}/org/dream/resolve/main/dream.safetensors`, directory: 'checkpoints', hash: SHA.toUpperCase(), hash_type: 'SHA256' }] },
      }),
      node(2, 'CheckpointLoaderSimple', ['sd15\\dream.safetensors']),
      node(3, 'LoraLoader', ['SDXL\\detail-tweaker.safetensors', 0.8, 1]),
      node(4, 'VAELoader', ['bypassed-vae.safetensors'], { mode: 4 }),
      node(5, 'UNETLoader', ['muted-unet.safetensors', 'default'], { mode: 2 }),
      node(6, 'DualCLIPLoader', ['clip_l.safetensors', 't5xxl_fp8.safetensors', 'flux', 'default'], {
        properties: {
          models: [
            { name: 't5xxl_fp8.safetensors', url: `${HF}/org/enc/resolve/main/t5xxl_fp8.safetensors`, directory: 'clip' },
            { name: 'clip_l.safetensors', directory: 'text_encoders' },
            { name: 'unused.safetensors', url: `${HF}/org/enc/resolve/main/unused.safetensors`, directory: 'text_encoders' },
          ],
        },
      }),
      node(7, 'VAELoader', ['taesd']),
      node(8, 'MarkdownNote', ['Get [x](https://example.com/x.safetensors)']),
      node(9, 'SAM2Segmenter', ['sam2_hiera_small.pt', 'cuda'], {
        properties: { models: [{ name: 'sam2_hiera_small.pt', url: 'https://example.com/sam2/sam2_hiera_small.pt', directory: 'sams' }] },
      }),
    ],
    links: [[1, 1, 0, 3, 0, 'MODEL'], [2, 1, 1, 3, 1, 'CLIP']],
    groups: [],
    config: {},
    extra: { ds: { scale: 1, offset: [0, 0] } },
    models: [{ name: '4x-Upscaler.pth', url: 'https://example.com/up/4x-Upscaler.pth', directory: 'upscale_models' }],
    version: 0.4,
  };
}

const SG_A = '5d2e4c1a-0000-4000-8000-00000000000a';
const SG_B = '5d2e4c1a-0000-4000-8000-00000000000b';
const SG_C = '5d2e4c1a-0000-4000-8000-00000000000c';

const sgLink = (id: number, origin: number, originSlot: number, target: number, targetSlot: number, type = 'COMBO') => ({ id, origin_id: origin, origin_slot: originSlot, target_id: target, target_slot: targetSlot, type });
const sgInput = (name: string, linkIds: number[]) => ({ id: `in-${name}`, name, type: 'COMBO', linkIds, pos: [0, 0] });
const widgetInput = (name: string, link: number | null) => ({ name, type: 'COMBO', widget: { name }, link });

/**
 * Schema 1 with nested subgraphs. A: a checkpoint loader fed by A's input `ckpt_name`, an instance
 * of B whose `lora_name` is fed by A's input `lora_name`, and a bypassed ControlNet loader.
 * B: a LoRA loader fed by B's input, a UNet loader with its own value. C: a VAE loader promoted
 * through `proxyWidgets`. The top level runs A three times (once bypassed) and C once.
 */
export function subgraphWorkflow(): Json {
  // As the frontend saves it now: inputs marked as widgets, and the promotions in proxyWidgets.
  const instanceA = (id: number, ckpt: string, lora: string, mode = 0) =>
    node(id, SG_A, [ckpt, lora], { mode, inputs: [widgetInput('ckpt_name', null), widgetInput('lora_name', null)], properties: { proxyWidgets: [['1', 'ckpt_name'], ['2', 'lora_name']] } });
  return {
    id: 'b0c5bd33-0000-4000-8000-000000000002',
    revision: 0,
    last_node_id: 40,
    last_link_id: 0,
    nodes: [
      instanceA(10, 'outer-a.safetensors', 'outer-lora-a.safetensors'),
      instanceA(11, 'bypassed-outer.safetensors', 'bypassed-lora.safetensors', 4),
      // An older file: no inputs on the instance, no proxyWidgets; the definition says which inputs are widgets.
      node(12, SG_A, ['outer-b.safetensors', 'outer-lora-b.safetensors']),
      node(20, SG_C, ['promoted-vae.safetensors'], { properties: { proxyWidgets: JSON.stringify([['5', 'vae_name']]) } }),
    ],
    links: [],
    groups: [],
    definitions: {
      subgraphs: [
        {
          id: SG_A,
          version: 1,
          name: 'Load everything',
          inputNode: { id: -10, bounding: [0, 0, 120, 60] },
          outputNode: { id: -20, bounding: [900, 0, 120, 60] },
          inputs: [sgInput('ckpt_name', [1]), sgInput('lora_name', [2])],
          outputs: [],
          widgets: [],
          nodes: [
            node(1, 'CheckpointLoaderSimple', ['stale-inner.safetensors'], { inputs: [widgetInput('ckpt_name', 1)] }),
            node(2, SG_B, ['stale-b.safetensors'], { inputs: [widgetInput('lora_name', 2)] }),
            node(3, 'ControlNetLoader', ['bypassed-controlnet.safetensors'], { mode: 4 }),
          ],
          links: [sgLink(1, -10, 0, 1, 0), sgLink(2, -10, 1, 2, 0)],
        },
        {
          id: SG_B,
          version: 1,
          name: 'LoRA and UNet',
          inputNode: { id: -10, bounding: [0, 0, 120, 60] },
          outputNode: { id: -20, bounding: [900, 0, 120, 60] },
          inputs: [sgInput('lora_name', [7])],
          outputs: [],
          widgets: [],
          nodes: [
            node(4, 'LoraLoaderModelOnly', ['stale-lora.safetensors', 1], { inputs: [{ name: 'model', type: 'MODEL', link: null }, widgetInput('lora_name', 7)] }),
            node(6, 'UNETLoader', ['inner-unet.safetensors', 'default'], {
              properties: { models: [{ name: 'inner-unet.safetensors', url: `${HF}/org/unet/resolve/main/inner-unet.safetensors`, directory: 'diffusion_models' }] },
            }),
          ],
          links: [sgLink(7, -10, 0, 4, 1)],
        },
        {
          id: SG_C,
          version: 1,
          name: 'VAE',
          inputNode: { id: -10, bounding: [0, 0, 120, 60] },
          outputNode: { id: -20, bounding: [900, 0, 120, 60] },
          inputs: [],
          outputs: [],
          widgets: [],
          nodes: [node(5, 'VAELoader', ['inner-vae.safetensors'])],
          links: [],
        },
      ],
    },
    config: {},
    extra: {},
    version: 1,
  };
}

/** API format: a loader with a name, one fed by a primitive, one fed by another node's output. */
export function apiWorkflow(): Json {
  return {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'api\\model.safetensors' }, _meta: { title: 'Load Checkpoint' } },
    '2': { class_type: 'LoraLoader', inputs: { lora_name: ['5', 0], strength_model: 1, strength_clip: 1, model: ['1', 0], clip: ['1', 1] } },
    '3': { class_type: 'LoraLoader', inputs: { lora_name: ['1', 2], strength_model: 1, strength_clip: 1, model: ['2', 0], clip: ['2', 1] } },
    '5': { class_type: 'PrimitiveString', inputs: { value: 'from-primitive.safetensors' } },
    '6': { class_type: 'KSampler', inputs: { seed: 1, model: ['3', 0] } },
  };
}

// ---------------------------------------------------------------- PNG

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

export type TextChunk = { type: 'tEXt' | 'zTXt' | 'iTXt'; keyword: string; text: string; compressed?: boolean };

export function textChunk({ type, keyword, text, compressed }: TextChunk): Buffer {
  const key = Buffer.from(`${keyword}\0`, 'latin1');
  if (type === 'tEXt') return chunk(type, Buffer.concat([key, Buffer.from(text, 'latin1')]));
  if (type === 'zTXt') return chunk(type, Buffer.concat([key, Buffer.from([0]), zlib.deflateSync(Buffer.from(text, 'latin1'))]));
  const body = compressed ? zlib.deflateSync(Buffer.from(text, 'utf8')) : Buffer.from(text, 'utf8');
  return chunk(type, Buffer.concat([key, Buffer.from([compressed ? 1 : 0, 0]), Buffer.from('en\0Workflow\0', 'utf8'), body]));
}

/** A valid 1×1 PNG with the given text chunks before its image data, as ComfyUI (PIL) writes them. */
export function png(texts: TextChunk[] = []): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...texts.map(textChunk),
    chunk('IDAT', zlib.deflateSync(Buffer.from([0, 255, 0, 0, 255]))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
