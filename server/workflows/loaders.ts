/**
 * What ComfyUI knows about model folders, as data: which widget of which loader node names a file
 * in which folder (and where that widget sits in a UI-format node's `widgets_values`), ComfyUI's
 * legacy folder names, and the folders under `models/` it searches for each. Extend the tables,
 * not the code: a new loader is one line in LOADERS.
 *
 * Sources: ComfyUI's nodes.py, comfy_extras/ and folder_paths.py; the custom nodes are those
 * whose loaders appear most in shared workflows (ComfyUI-GGUF, IPAdapter plus, Impact pack, AnimateDiff).
 */

/** One file-name widget of a loader node. */
export interface LoaderWidget {
  /** The input's name: the key in API format (`inputs.ckpt_name`). */
  widget: string;
  /** Its position in a UI-format node's `widgets_values` (widgets only; linked inputs take no slot). */
  index: number;
  /** The model folder (ComfyUI's folder name) the loader reads it from. */
  folder: string;
}

const w = (widget: string, index: number, folder: string): LoaderWidget => ({ widget, index, folder });
/** `clip_name1` … `clip_nameN` at positions 0 … N-1. */
const clips = (n: number, folder = 'text_encoders'): LoaderWidget[] => Array.from({ length: n }, (_, i) => w(`clip_name${i + 1}`, i, folder));

/** Loader node type (`class_type`) → its file-name widgets. */
export const LOADERS: Readonly<Record<string, readonly LoaderWidget[]>> = Object.freeze({
  // ComfyUI core (nodes.py)
  CheckpointLoaderSimple: [w('ckpt_name', 0, 'checkpoints')],
  CheckpointLoader: [w('config_name', 0, 'configs'), w('ckpt_name', 1, 'checkpoints')],
  unCLIPCheckpointLoader: [w('ckpt_name', 0, 'checkpoints')],
  ImageOnlyCheckpointLoader: [w('ckpt_name', 0, 'checkpoints')],
  LoraLoader: [w('lora_name', 0, 'loras')],
  LoraLoaderModelOnly: [w('lora_name', 0, 'loras')],
  VAELoader: [w('vae_name', 0, 'vae')],
  ControlNetLoader: [w('control_net_name', 0, 'controlnet')],
  DiffControlNetLoader: [w('control_net_name', 0, 'controlnet')],
  UNETLoader: [w('unet_name', 0, 'diffusion_models')],
  CLIPLoader: [w('clip_name', 0, 'text_encoders')],
  DualCLIPLoader: clips(2),
  TripleCLIPLoader: clips(3),
  QuadrupleCLIPLoader: clips(4),
  CLIPVisionLoader: [w('clip_name', 0, 'clip_vision')],
  UpscaleModelLoader: [w('model_name', 0, 'upscale_models')],
  StyleModelLoader: [w('style_model_name', 0, 'style_models')],
  GLIGENLoader: [w('gligen_name', 0, 'gligen')],
  HypernetworkLoader: [w('hypernetwork_name', 0, 'hypernetworks')],
  // comfy_extras
  PhotoMakerLoader: [w('photomaker_model_name', 0, 'photomaker')],
  ModelPatchLoader: [w('name', 0, 'model_patches')],
  AudioEncoderLoader: [w('audio_encoder_name', 0, 'audio_encoders')],
  LatentUpscaleModelLoader: [w('model_name', 0, 'latent_upscale_models')],
  // Custom nodes seen in many shared workflows
  UnetLoaderGGUF: [w('unet_name', 0, 'diffusion_models')],
  CLIPLoaderGGUF: [w('clip_name', 0, 'text_encoders')],
  DualCLIPLoaderGGUF: clips(2),
  TripleCLIPLoaderGGUF: clips(3),
  IPAdapterModelLoader: [w('ipadapter_file', 0, 'ipadapter')],
  UltralyticsDetectorProvider: [w('model_name', 0, 'ultralytics')],
  SAMLoader: [w('model_name', 0, 'sams')],
  ADE_LoadAnimateDiffModel: [w('model_name', 0, 'animatediff_models')],
});

/**
 * Values of file-name widgets that name no file: VAELoader's built-in approximations, and the
 * "None" choice of loaders whose model is optional.
 */
export const NOT_A_FILE: ReadonlySet<string> = new Set(['', 'none', 'None', 'null', 'taesd', 'taesdxl', 'taesd3', 'taef1', 'pixel_space']);

/** ComfyUI's old folder names and the folder each now means (folder_paths.map_legacy). */
export const LEGACY_FOLDERS: Readonly<Record<string, string>> = Object.freeze({ unet: 'diffusion_models', clip: 'text_encoders' });

export const canonicalFolder = (folder: string): string => LEGACY_FOLDERS[folder] ?? folder;

/**
 * The folders under `models/` ComfyUI searches for a folder name, in its order
 * (folder_paths.folder_names_and_paths); any other folder is searched under its own name.
 */
export const DEFAULT_SUBFOLDERS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  text_encoders: ['text_encoders', 'clip'],
  diffusion_models: ['unet', 'diffusion_models'],
  controlnet: ['controlnet', 't2i_adapter'],
});

export const subfoldersOf = (folder: string): readonly string[] => DEFAULT_SUBFOLDERS[folder] ?? [folder];
