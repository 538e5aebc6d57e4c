import { statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ImagineError, InvalidRequestError } from '../errors.js';
import {
  DEFAULT_CFG,
  DEFAULT_STEPS,
  DEFAULT_STRENGTH,
  countTokens,
  formatTokenCount,
  MAX_CLIP_SKIP,
  PROMPT_SYNTAXES,
  requestedStepOf,
  validateRequest,
  type GenerationRequest,
  type PromptSyntax,
} from '../diffusion/pipeline.js';
import { parseSeedOrRandom, randomSeed } from '../diffusion/rng/index.js';
import { RNG_DEVICES, type RngDevice } from '../diffusion/rng/types.js';
import { SCHEDULER_NAMES, TIMESTEP_SPACINGS } from '../diffusion/schedulers/types.js';
import { parseProviderChoice, type ProviderChoice } from '../diffusion/providers.js';
import { embeddingsFolderFor } from '../diffusion/textual-inversion.js';
import { extractExtraNetworks } from '../diffusion/lora/tags.js';
import { resolveModelPath } from '../hub/cache.js';
import { ensureWritableFolder } from '../util/fs.js';
import { ProgressBar } from './progress.js';

function integer(label: string, min: number, max: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) throw new InvalidArgumentError(`${label} must be a whole number (got "${text}").`);
    if (value < min || value > max) throw new InvalidArgumentError(`${label} must be between ${min} and ${max} (got ${value}).`);
    return value;
  };
}

function decimal(label: string) {
  return (text: string): number => {
    const value = Number(text);
    if (text.trim() === '' || !Number.isFinite(value)) throw new InvalidArgumentError(`${label} must be a number (got "${text}").`);
    return value;
  };
}

/** What commander parses: the request's own fields under their flag names, plus the command's own. */
interface GenerateOptions extends Pick<GenerationRequest, 'prompt' | 'steps' | 'cfg' | 'width' | 'height' | 'scheduler' | 'karras' | 'timestepSpacing'> {
  model?: string;
  negative: string;
  seed?: bigint | 'random';
  rng: RngDevice;
  batch: number;
  promptSyntax: PromptSyntax;
  clipSkip: number;
  provider: ProviderChoice;
  safety: boolean;
  fuseAttention?: boolean;
  initImage?: string;
  strength?: number;
  embeddings?: string;
  loraDir?: string;
  out: string;
}

export interface GenerateCommandDefaults {
  /** The configured model folder, used when --model is not given. */
  modelPath?: () => string | undefined;
  /** The configured provider, used when --provider is not given. */
  provider?: () => ProviderChoice;
  /** The configured model.fuseAttention, used when --fuse-attention is not given. */
  fuseAttention?: () => boolean;
  /** The configured model.embeddingsDir, used when --embeddings is not given ("" = the model folder's embeddings/). */
  embeddingsDir?: () => string;
  /** The configured model.loraDir ("" = none), read only when the prompt has a LoRA tag and --lora-dir is not given. */
  loraDir?: () => string;
}

export function registerGenerateCommand(program: Command, defaults: GenerateCommandDefaults = {}): void {
  program
    .command('generate')
    .description('Generate images from a prompt and write them as PNG files (DIR/0.png … DIR/<N-1>.png).')
    .option('--model <dir>', 'model folder in diffusers ONNX layout, or a pulled Hub repo owner/name[@rev] (default: model.path from the config)')
    .requiredOption('--prompt <text>', 'what to draw')
    .option('--negative <text>', 'negative prompt', '')
    .option('--seed <n>', 'seed, 0 … 2^64−1, or -1 for a random one (default: random, printed)', (text) => {
      try {
        return parseSeedOrRandom(text);
      } catch (error) {
        throw new InvalidArgumentError((error as Error).message);
      }
    })
    .option('--steps <n>', 'denoising steps', integer('steps', 1, 1000), DEFAULT_STEPS)
    .option('--cfg <x>', 'classifier-free guidance scale (≤ 1 disables guidance; an LCM-distilled UNet takes it as its guidance embedding)', decimal('cfg'), DEFAULT_CFG)
    .option('--width <w>', 'image width, a multiple of 8', integer('width', 8, 4096), 512)
    .option('--height <h>', 'image height, a multiple of 8', integer('height', 8, 4096), 512)
    .addOption(new Option('--scheduler <name>', "scheduler (default: the model's scheduler_config.json)").choices([...SCHEDULER_NAMES]))
    .option('--karras', 'use Karras sigmas (euler, lms, dpmpp_2m, dpmpp_2m_sde, heun, unipc)')
    .addOption(new Option('--timestep-spacing <spacing>', "timestep spacing (default: the scheduler's own)").choices([...TIMESTEP_SPACINGS]))
    .addOption(new Option('--rng <device>', "which torch generator the noise reproduces: cpu (torch.Generator('cpu')) or cuda (Philox)").choices([...RNG_DEVICES]).default('cpu'))
    .option('--batch <n>', 'images per prompt', integer('batch', 1, 8), 1)
    .addOption(
      new Option(
        '--prompt-syntax <syntax>',
        "prompt syntax: plain = diffusers' literal text, truncated at 77 tokens; a1111 = AUTOMATIC1111's (word:1.2) weights, [word], BREAK and prompts past 75 tokens in chunks",
      )
        .choices([...PROMPT_SYNTAXES])
        .default('plain'),
    )
    .option('--clip-skip <n>', "A1111's clip skip: 1 = the text encoder's last layer, 2 = the layer before it", integer('clip skip', 1, MAX_CLIP_SKIP), 1)
    .option('--provider <name>', 'execution provider: auto, cuda, webgpu or cpu', (text) => {
      try {
        return parseProviderChoice(text);
      } catch (error) {
        throw new InvalidArgumentError((error as Error).message);
      }
    })
    .option('--no-safety', "skip the model's safety checker")
    .option('--lora-dir <dir>', 'folder of LoRA .safetensors files for <lora:name:weight> in an a1111 prompt (default: model.loraDir from the config)')
    .option('--fuse-attention', 'run attention as ONNX Runtime\'s fused MultiHeadAttention (default: model.fuseAttention from the config)')
    .option('--init-image <file>', 'start from this image (img2img: PNG, JPEG, WebP …); resized to --width × --height when given, else its own size rounded down to multiples of 8')
    .option('--strength <x>', `with --init-image: how much of it to repaint, greater than 0 and at most 1 (default ${DEFAULT_STRENGTH})`, decimal('strength'))
    .option('--embeddings <dir>', "textual-inversion embeddings folder (default: model.embeddingsDir from the config, else the model folder's embeddings/)")
    .requiredOption('--out <dir>', 'output folder')
    .action(async (options: GenerateOptions, command: Command) => {
      const given = (name: string) => command.getOptionValueSource(name) !== 'default';
      await runGenerate(options, defaults, { width: given('width'), height: given('height') });
    });
}

/** Why `dir` cannot take the PNGs, for a person, or undefined when it is (now) a writable folder. */
function outputFolderProblem(dir: string): string | undefined {
  try {
    if (!statSync(dir).isDirectory()) return 'it is a file, not a folder';
  } catch {
    // Missing: created below, with its parents.
  }
  try {
    ensureWritableFolder(dir);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR' || code === 'EEXIST') return 'a file is in the way of the folder';
    if (code === 'EACCES' || code === 'EPERM') return 'no permission to write there';
    if (code === 'EROFS') return 'the file system is read-only';
    return code ?? (error as Error).message;
  }
}

/**
 * The bytes of --init-image and the size it gives the output where --width / --height were not given (diffusers'
 * img2img takes the image's size, rounded down to multiples of 8). Read and checked before the model loads.
 */
async function readInitImage(file: string): Promise<{ data: Uint8Array; width: number; height: number }> {
  let data: Uint8Array;
  try {
    data = new Uint8Array(await readFile(file));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : code === 'EACCES' ? 'no permission to read it' : (code ?? 'unreadable');
    throw new ImagineError('init_image', `cannot read --init-image ${file}: ${why}.`);
  }
  const { default: sharp } = await import('sharp');
  const metadata = await sharp(data)
    .metadata()
    .catch(() => null);
  if (!metadata?.width || !metadata.height) throw new ImagineError('init_image', `--init-image ${file} is not an image this program can read (use PNG, JPEG or WebP).`);
  return { data, width: metadata.width - (metadata.width % 8), height: metadata.height - (metadata.height % 8) };
}

async function runGenerate(options: GenerateOptions, defaults: GenerateCommandDefaults, sizeGiven: { width: boolean; height: boolean }): Promise<void> {
  // Everything a person can get wrong is checked before the model loads (seconds to minutes), so a typo costs nothing.
  if (options.strength !== undefined && options.initImage === undefined) throw new InvalidRequestError('--strength needs --init-image.');
  const init = options.initImage === undefined ? undefined : await readInitImage(options.initImage);
  const randomlySeeded = typeof options.seed !== 'bigint';
  const seed = typeof options.seed === 'bigint' ? options.seed : randomSeed();
  const request: GenerationRequest = {
    prompt: options.prompt,
    negativePrompt: options.negative,
    seed,
    steps: options.steps,
    cfg: options.cfg,
    width: init && !sizeGiven.width ? init.width : options.width,
    height: init && !sizeGiven.height ? init.height : options.height,
    scheduler: options.scheduler,
    karras: options.karras,
    timestepSpacing: options.timestepSpacing,
    rng: options.rng,
    batch: options.batch,
    safetyCheck: options.safety,
    promptSyntax: options.promptSyntax,
    clipSkip: options.clipSkip,
    ...(init ? { initImage: { data: init.data, strength: options.strength ?? DEFAULT_STRENGTH } } : {}),
  };
  validateRequest(request);
  const outProblem = outputFolderProblem(options.out);
  if (outProblem) throw new ImagineError('output_folder', `cannot write the images to --out ${options.out}: ${outProblem}.`);
  // A folder, or a Hub repo id (owner/name[@revision]) already pulled into the Hugging Face cache.
  const configuredPath = options.model ?? defaults.modelPath?.();
  if (!configuredPath) throw new InvalidRequestError('no model: pass --model DIR or set model.path in the config (see `imagine-bot models --help`).');
  const modelPath = resolveModelPath(configuredPath);
  if (randomlySeeded) process.stderr.write(`seed: ${seed}\n`);

  // <lora:…> tags are not prompt text under a1111 (the pipeline removes them): not counted either.
  const loraTags = options.promptSyntax === 'a1111' ? extractExtraNetworks(options.prompt) : { text: options.prompt, loras: [] };

  // The engine's loader and the PNG encoder (sharp) are imported only now: a refused argument costs no import time.
  const [{ loadPipeline }, { encodePng, generationInfotext }] = await Promise.all([import('../diffusion/load.js'), import('../diffusion/png.js')]);
  const pipeline = await loadPipeline(modelPath, {
    provider: options.provider ?? defaults.provider?.() ?? 'auto',
    safetyChecker: options.safety,
    fuseAttention: options.fuseAttention ?? defaults.fuseAttention?.() ?? false,
    embeddingsDir: embeddingsFolderFor(options.embeddings ?? defaults.embeddingsDir?.(), modelPath),
    loraDir: options.loraDir ?? (loraTags.loras.length > 0 ? defaults.loraDir?.() || null : null),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  try {
    // "92/150 tokens"; under plain, a warning that names the words diffusers' truncation drops.
    const tokens = countTokens(pipeline.model.tokenizer, loraTags.text, options.promptSyntax, pipeline.model.embeddings);
    const tokenLine = formatTokenCount(tokens);
    process.stderr.write(tokens.droppedTokenCount > 0 ? `warning: prompt ${tokenLine} (try --prompt-syntax a1111)\n` : `prompt: ${tokenLine}\n`);
    const bar = new ProgressBar('generating', options.steps);
    bar.update(0, true);
    const result = await pipeline.generate(request, {
      onProgress: ({ step, totalSteps }) => bar.update(requestedStepOf(step, totalSteps, options.steps)),
    });
    bar.finish();

    const sampler = result.sampler;
    for (const image of result.images) {
      const infotext = generationInfotext(request, sampler, image, pipeline.model.name, result.textualInversions, result.loras);
      const path = join(options.out, `${image.index}.png`);
      await writeFile(path, await encodePng(image.rgb, image.width, image.height, infotext));
      const flag = image.nsfw ? ' (flagged by the safety checker)' : '';
      process.stdout.write(`${path}${flag}\n`);
    }
    const seconds = (result.timings.totalMs / 1000).toFixed(1);
    process.stderr.write(`done in ${seconds}s (${sampler}, ${options.steps} steps, seed ${seed})\n`);
  } finally {
    await pipeline.release();
    await pipeline.model.release();
  }
}
