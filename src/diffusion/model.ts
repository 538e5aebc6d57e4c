import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import type { ModelRewrite } from './providers.js';
import { isFile } from '../util/fs.js';
import { isClipSkipOutput } from './clip-skip.js';
import { InvalidRequestError, ModelFileError } from './errors.js';
import { readModelJson } from './model-json.js';
import { EmbeddingVocabulary, placeTextualInversions, TokenEmbeddingRewriteError, type TextualInversion } from './textual-inversion.js';
import { loadClipTokenizer, type ClipTokenizer } from './tokenizer.js';
import { parseSchedulerConfig } from './schedulers/index.js';
import type { SchedulerConfig } from './schedulers/types.js';

/** The element types ONNX Runtime reports in session metadata that our tensors can take. */
export type TensorDtype = 'float32' | 'float16' | 'int32' | 'int64' | 'bool';

export interface TensorContract {
  name: string;
  dtype: TensorDtype;
  /** Dimensions as exported: numbers for fixed axes, names for dynamic ones. */
  shape: readonly (number | string)[];
}

/** One ONNX model of the pipeline with what its metadata says about its inputs and outputs. */
export interface ModelPart {
  /** e.g. `unet/model.onnx`, relative to the model folder (used in error messages). */
  readonly file: string;
  readonly session: InferenceSession;
  readonly inputs: ReadonlyMap<string, TensorContract>;
  readonly outputs: ReadonlyMap<string, TensorContract>;
}

export interface ImageProcessorConfig {
  crop_size?: { height: number; width: number } | number;
  do_center_crop?: boolean;
  do_convert_rgb?: boolean;
  do_normalize?: boolean;
  do_rescale?: boolean;
  do_resize?: boolean;
  image_mean?: number[];
  image_std?: number[];
  resample?: number;
  rescale_factor?: number;
  size?: { shortest_edge?: number; height?: number; width?: number } | number;
}

export interface StableDiffusionModel {
  readonly folder: string;
  /** The folder's name, shown in PNG metadata as A1111's `Model:`. */
  readonly name: string;
  readonly modelIndex: Record<string, unknown>;
  readonly tokenizer: ClipTokenizer;
  /**
   * The textual-inversion embeddings the text encoder was given at load (textual-inversion.ts), matched in prompts by
   * the tokenizer path; empty without an embeddings folder.
   */
  readonly embeddings: EmbeddingVocabulary;
  readonly schedulerConfig: SchedulerConfig;
  readonly textEncoder: ModelPart;
  readonly unet: ModelPart;
  readonly vaeDecoder: ModelPart;
  /** The VAE encoder once opened (at load with `LoadModelOptions.vaeEncoder`, else by the first `openVaeEncoder`), else null. */
  readonly vaeEncoder: ModelPart | null;
  /**
   * Opens the VAE encoder on first use (img2img) and keeps it; text-to-image never pays for it. Throws
   * InvalidRequestError when the folder has none.
   */
  openVaeEncoder(): Promise<ModelPart>;
  readonly safetyChecker: { part: ModelPart; preprocessor: ImageProcessorConfig } | null;
  /** Latent scaling of the VAE; SD 1.5's 0.18215 unless the folder's vae config says otherwise. */
  readonly vaeScalingFactor: number;
  /** Spatial downsampling of the VAE (8 for SD). */
  readonly vaeScaleFactor: number;
  /** The shapes the UNet session's inputs are pinned to (see pin-shapes.ts), or null when they are as exported. */
  readonly unetPinnedShapes: Readonly<Record<string, readonly number[]>> | null;
  /**
   * Reopens the UNet with its inputs pinned to these shapes (null: as exported) unless it already has exactly those;
   * resolves to whether it reopened. The old session is released first, so a GPU never holds two copies of the
   * UNet's weights. If the new session cannot open, the UNet is reopened as before and the error is thrown.
   */
  pinUnetShapes(shapes: Readonly<Record<string, readonly number[]>> | null): Promise<boolean>;
  /**
   * Opens another session of the text encoder or the UNet whose bytes `rewrite` changes first (LoRA weights merged in,
   * lora/sessions.ts), with the same session options as the model's own (the UNet unpinned). The caller releases it.
   */
  openPartWith(part: 'text_encoder' | 'unet', rewrite: ModelRewrite): Promise<ModelPart>;
  release(): Promise<void>;
}

/**
 * Creates an ONNX Runtime session for one model file; the provider module decides where it runs. `pinnedShapes` fixes
 * input dimensions (providers.ts' `openSession` option of that name).
 */
export type SessionFactory = (
  modelFile: string,
  pinnedShapes?: Readonly<Record<string, readonly number[]>>,
  edit?: ModelEdit,
  rewrite?: ModelRewrite,
) => Promise<InferenceSession>;

/** A load-time rewrite of a model's bytes (providers.ts' `openSession` option `edit`). */
export type ModelEdit = (model: Uint8Array) => Uint8Array;

export interface LoadModelOptions {
  createSession: SessionFactory;
  /** Load the safety checker when the folder has one (default true). */
  safetyChecker?: boolean;
  /** Load the VAE encoder (image-to-image); not needed for text-to-image (default false). */
  vaeEncoder?: boolean;
  /** Called as each part starts loading, for progress output. */
  onProgress?: (event: { part: string; index: number; total: number }) => void;
  /** Textual-inversion embeddings to add to the text encoder (loadEmbeddingsFolder); none by default. */
  textualInversions?: readonly TextualInversion[];
  /** Where to say what could not be used (an embedding for another model, a graph the rewrite does not know). */
  warn?: (line: string) => void;
}

const SD15_VAE_SCALING_FACTOR = 0.18215;

function readJsonFile<T>(folder: string, relative: string): Promise<T> {
  return readModelJson<T>(join(folder, relative), relative);
}

/** diffusers writes Python's -Infinity/NaN tokens into some scheduler configs, which JSON.parse rejects. */
function readSchedulerConfig(folder: string): Promise<SchedulerConfig> {
  const relative = 'scheduler/scheduler_config.json';
  return readModelJson(join(folder, relative), relative, parseSchedulerConfig);
}

function toDtype(type: string, file: string, name: string): TensorDtype {
  switch (type) {
    case 'float32':
    case 'float16':
    case 'int32':
    case 'int64':
    case 'bool':
      return type;
    default:
      throw new ModelFileError(file, `tensor ${name} has type ${type}, which the pipeline does not support`);
  }
}

function contracts(
  file: string,
  names: readonly string[],
  metadata: readonly InferenceSession.ValueMetadata[],
): Map<string, TensorContract> {
  const map = new Map<string, TensorContract>();
  // ORT JS reports metadata as a positional array aligned with inputNames / outputNames.
  names.forEach((name, index) => {
    const meta = metadata[index];
    if (!meta || !meta.isTensor) throw new ModelFileError(file, `input/output ${name} is not a tensor`);
    map.set(name, { name, dtype: toDtype(meta.type, file, name), shape: meta.shape });
  });
  return map;
}

async function openPart(
  folder: string,
  file: string,
  createSession: SessionFactory,
  pinnedShapes?: Readonly<Record<string, readonly number[]>>,
  edit?: ModelEdit,
  rewrite?: ModelRewrite,
): Promise<ModelPart> {
  const path = join(folder, file);
  if (!(await isFile(path))) throw new ModelFileError(file, 'file is missing');
  let session: InferenceSession;
  try {
    session = await createSession(path, pinnedShapes, edit, rewrite);
  } catch (error) {
    throw new ModelFileError(file, describeLoadFailure(error), { cause: error });
  }
  return {
    file,
    session,
    inputs: contracts(file, session.inputNames, session.inputMetadata),
    // The export's own outputs: those the clip-skip rewrite added are read by name (text-conditioning.ts).
    outputs: new Map([...contracts(file, session.outputNames, session.outputMetadata)].filter(([name]) => !isClipSkipOutput(name))),
  };
}

function sameShapes(
  a: Readonly<Record<string, readonly number[]>> | null,
  b: Readonly<Record<string, readonly number[]>> | null,
): boolean {
  if (a === null || b === null) return a === b;
  const names = Object.keys(a);
  return (
    names.length === Object.keys(b).length &&
    names.every((name) => {
      const x = a[name];
      const y = b[name];
      return x !== undefined && y !== undefined && x.length === y.length && x.every((size, axis) => size === y[axis]);
    })
  );
}

/** ONNX Runtime's load errors are long and technical; keep the part a person can act on. */
function describeLoadFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const externalData = /External data path|external data|model\.onnx_data|weights\.pb/i.exec(message);
  if (externalData) {
    return 'its external weights file (weights.pb or model.onnx_data beside it) is missing or unreadable';
  }
  if (/protobuf parsing failed|Protobuf parsing failed|INVALID_PROTOBUF|Load model .* failed/i.test(message)) {
    return 'is not a valid ONNX model (corrupt or truncated file?)';
  }
  const firstLine = message.split('\n')[0] ?? message;
  return `cannot be loaded by ONNX Runtime: ${firstLine.slice(0, 300)}`;
}

function requireInputs(part: ModelPart, names: string[]): void {
  for (const name of names) {
    if (!part.inputs.has(name)) {
      throw new ModelFileError(part.file, `has no input named ${name} (inputs: ${[...part.inputs.keys()].join(', ')})`);
    }
  }
}

/**
 * Loads a Stable Diffusion model folder in diffusers' ONNX layout (OnnxStableDiffusionPipeline from
 * convert_stable_diffusion_checkpoint_to_onnx.py, or optimum's ORTStableDiffusionPipeline). Every missing or
 * corrupt file becomes a one-line ModelFileError naming the file.
 */
export async function loadStableDiffusionModel(folder: string, options: LoadModelOptions): Promise<StableDiffusionModel> {
  const root = resolve(folder);
  try {
    if (!(await stat(root)).isDirectory()) throw new Error('not a folder');
  } catch {
    throw new ModelFileError(folder, 'model folder does not exist');
  }
  const modelIndex = await readJsonFile<Record<string, unknown>>(root, 'model_index.json');
  const schedulerConfig = await readSchedulerConfig(root);
  const tokenizer = await loadClipTokenizer(join(root, 'tokenizer'));

  const wantSafety = (options.safetyChecker ?? true) && (await isFile(join(root, 'safety_checker/model.onnx')));
  const hasEncoder = await isFile(join(root, 'vae_encoder/model.onnx'));
  const wantEncoder = (options.vaeEncoder ?? false) && hasEncoder;
  const plan = ['text_encoder', 'unet', 'vae_decoder', ...(wantEncoder ? ['vae_encoder'] : []), ...(wantSafety ? ['safety_checker'] : [])];
  const parts = new Map<string, ModelPart>();
  const warn = options.warn ?? (() => {});
  const textualInversions = options.textualInversions?.length ? placeTextualInversions(options.textualInversions, warn) : null;
  const textEncoderEdit: ModelEdit | undefined = textualInversions
    ? (bytes) => {
        try {
          return textualInversions.edit(bytes);
        } catch (error) {
          if (!(error instanceof TokenEmbeddingRewriteError)) throw error;
          warn(`textual-inversion embeddings are unavailable for this model: ${error.message}`);
          return bytes;
        }
      }
    : undefined;
  try {
    for (const [index, name] of plan.entries()) {
      options.onProgress?.({ part: name, index, total: plan.length });
      parts.set(name, await openPart(root, `${name}/model.onnx`, options.createSession, undefined, name === 'text_encoder' ? textEncoderEdit : undefined));
    }
  } catch (error) {
    await Promise.allSettled([...parts.values()].map((part) => part.session.release()));
    throw error;
  }
  const textEncoder = parts.get('text_encoder')!;
  let unet = parts.get('unet')!;
  let unetPinnedShapes: Readonly<Record<string, readonly number[]>> | null = null;
  const vaeDecoder = parts.get('vae_decoder')!;
  requireInputs(textEncoder, ['input_ids']);
  requireInputs(unet, ['sample', 'timestep', 'encoder_hidden_states']);
  requireInputs(vaeDecoder, ['latent_sample']);

  let safetyChecker: StableDiffusionModel['safetyChecker'] = null;
  const safetyPart = parts.get('safety_checker');
  if (safetyPart) {
    requireInputs(safetyPart, ['clip_input', 'images']);
    const preprocessor = await readJsonFile<ImageProcessorConfig>(root, 'feature_extractor/preprocessor_config.json');
    safetyChecker = { part: safetyPart, preprocessor };
  }

  // Exports that carry the VAE's config (optimum writes vae_decoder/config.json) may give another scaling factor.
  let vaeScalingFactor = SD15_VAE_SCALING_FACTOR;
  if (await isFile(join(root, 'vae_decoder/config.json'))) {
    const vaeConfig = await readJsonFile<{ scaling_factor?: number }>(root, 'vae_decoder/config.json');
    if (typeof vaeConfig.scaling_factor === 'number') vaeScalingFactor = vaeConfig.scaling_factor;
  }

  const name = root.split(/[\\/]/).filter(Boolean).pop() ?? 'model';
  let unetReleased = false;
  let encoderOpening: Promise<ModelPart> | null = null;
  const reopenUnet = async (shapes: Readonly<Record<string, readonly number[]>> | null): Promise<void> => {
    // After a failed reopen the old session is already gone (ORT throws on a second release).
    if (!unetReleased) await unet.session.release();
    unetReleased = true;
    unet = await openPart(root, 'unet/model.onnx', options.createSession, shapes ?? undefined);
    unetReleased = false;
    parts.set('unet', unet);
    unetPinnedShapes = shapes;
  };
  return {
    folder: root,
    name,
    modelIndex,
    tokenizer,
    embeddings: textualInversions ? textualInversions.vocabulary((text) => tokenizer.tokenize(text)) : EmbeddingVocabulary.empty,
    schedulerConfig,
    textEncoder,
    get unet() {
      return unet;
    },
    vaeDecoder,
    get vaeEncoder() {
      return parts.get('vae_encoder') ?? null;
    },
    openVaeEncoder() {
      const opened = parts.get('vae_encoder');
      if (opened) return Promise.resolve(opened);
      if (!hasEncoder) return Promise.reject(new InvalidRequestError('this model has no VAE encoder (vae_encoder/model.onnx), so it cannot start from an image.'));
      // One open shared by concurrent callers; a failed open is tried again next time.
      encoderOpening ??= openPart(root, 'vae_encoder/model.onnx', options.createSession).then(
        (part) => {
          parts.set('vae_encoder', part);
          return part;
        },
        (error: unknown) => {
          encoderOpening = null;
          throw error;
        },
      );
      return encoderOpening;
    },
    safetyChecker,
    vaeScalingFactor,
    vaeScaleFactor: 8,
    get unetPinnedShapes() {
      return unetPinnedShapes;
    },
    async pinUnetShapes(shapes) {
      if (sameShapes(shapes, unetPinnedShapes)) return false;
      const previous = unetPinnedShapes;
      try {
        await reopenUnet(shapes);
      } catch (error) {
        await reopenUnet(previous);
        throw error;
      }
      return true;
    },
    openPartWith(part, rewrite) {
      // A LoRA-merged text encoder keeps the textual-inversion rows too: the merge runs first, then the same edit.
      return openPart(root, `${part}/model.onnx`, options.createSession, undefined, part === 'text_encoder' ? textEncoderEdit : undefined, rewrite);
    },
    async release() {
      await Promise.allSettled([...parts.values()].map((part) => part.session.release()));
    },
  };
}
