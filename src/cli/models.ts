/**
 * `imagine-bot models pull <owner/name>[@revision]`, `imagine-bot models list` and `imagine-bot models embeddings`:
 * getting SD ONNX models into the Hugging Face cache and seeing what is there (and which embeddings the bot loads). Settings (HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE) come through
 * the configuration loader, so .env applies here as it does to the bot.
 */
import type { Command } from 'commander';
import { addConfigOption, configPathOf } from '../config/cli.js';
import { loadConfig, type Config } from '../config/load.js';
import { LoraLibrary, shortLoraHash } from '../diffusion/lora/library.js';
import { listCachedModels, resolveModelPath } from '../hub/cache.js';
import { createProgressReporter, type ProgressOutput } from '../hub/progress.js';
import { formatBytes, pullModel, type PullResult } from '../hub/pull.js';
import { formatRepoRef, parseRepoRef } from '../hub/repo.js';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { embeddingsFolderFor, loadEmbeddingsFolder, shortHash, tokenEmbeddingTable } from '../diffusion/textual-inversion.js';

export interface ModelsCommandIO {
  stdout: ProgressOutput;
  stderr: ProgressOutput;
}

const defaultIO = (): ModelsCommandIO => ({ stdout: process.stdout, stderr: process.stderr });

/** Runs `models pull` (exported for tests and for other commands that want to offer a pull). */
export async function runModelsPull(
  repoArg: string,
  options: { cacheDir?: string; config: Config; io?: ModelsCommandIO; previewDecoder?: boolean },
): Promise<PullResult> {
  const io = options.io ?? defaultIO();
  const ref = parseRepoRef(repoArg);
  const cacheDir = options.cacheDir ? resolve(options.cacheDir) : options.config.hub.cacheDir;
  io.stderr.write(`Pulling ${formatRepoRef(ref)} from ${options.config.hub.endpoint} into ${cacheDir}\n`);
  const result = await pullModel({
    ...ref,
    cacheDir,
    endpoint: options.config.hub.endpoint,
    token: options.config.hub.token,
    onProgress: createProgressReporter(io.stderr),
    kind: options.previewDecoder ? 'preview-decoder' : 'pipeline',
  });
  const fetched = result.downloadedBytes > 0 ? `downloaded ${formatBytes(result.downloadedBytes)}` : 'everything was already in the cache';
  io.stdout.write(
    [
      `Pulled ${formatRepoRef(ref)} (commit ${result.commit.slice(0, 12)}): ${result.files.length} files, ${formatBytes(result.totalBytes)}; ${fetched}.`,
      `  folder: ${result.snapshotPath}`,
      options.previewDecoder
        ? `  use it: IMAGINE_PREVIEW_DECODER=${result.snapshotPath} in .env (model.previewDecoder)`
        : `  use it: IMAGINE_MODEL=${formatRepoRef(ref)} in .env`,
      '',
    ].join('\n'),
  );
  return result;
}

/** Runs `models list`: the SD ONNX models in the cache, and what model.path resolves to. */
export function runModelsList(options: { cacheDir?: string; config: Config; io?: ModelsCommandIO }): void {
  const io = options.io ?? defaultIO();
  const cacheDir = options.cacheDir ? resolve(options.cacheDir) : options.config.hub.cacheDir;
  const models = listCachedModels(cacheDir);
  const lines: string[] = [];
  if (models.length === 0) lines.push(`No SD ONNX models in ${cacheDir}. Get one with: imagine-bot models pull owner/name[@revision]`);
  else {
    lines.push(`SD ONNX models in ${cacheDir}:`);
    for (const model of models) {
      const revision = model.refs.length > 0 ? model.refs.join(', ') : model.commit.slice(0, 12);
      const state = model.complete ? '' : '  (incomplete: pull it again to finish)';
      lines.push(`  ${model.repo}@${revision}  ${formatBytes(model.size)}  ${model.path}${state}`);
    }
  }
  const configured = options.config.model.path;
  if (!configured) lines.push('Configured model (IMAGINE_MODEL / model.path): none');
  else {
    try {
      lines.push(`Configured model (IMAGINE_MODEL / model.path): ${configured} → ${resolveModelPath(configured, { cacheDir })}`);
    } catch (error) {
      lines.push(`Configured model (IMAGINE_MODEL / model.path): ${configured} → ${(error as Error).message}`);
    }
  }
  io.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * Runs `models embeddings`: the textual-inversion embeddings the bot would load (model.embeddingsDir, else the model
 * folder's embeddings/), with their vector counts and TI hashes, and the files it would skip and why. With the model
 * at hand, an embedding whose width is not the text encoder's is marked as skipped too, as loading skips it.
 */
export async function runModelsEmbeddings(options: { dir?: string; config: Config; io?: ModelsCommandIO }): Promise<void> {
  const io = options.io ?? defaultIO();
  let modelFolder: string | undefined;
  let modelProblem: string | undefined;
  if (options.config.model.path) {
    try {
      modelFolder = resolveModelPath(options.config.model.path, { cacheDir: options.config.hub.cacheDir });
    } catch (error) {
      modelProblem = (error as Error).message;
    }
  }
  const configured = options.dir ? resolve(options.dir) : options.config.model.embeddingsDir;
  if (!configured && modelFolder === undefined) {
    io.stdout.write(`No embeddings folder: set model.embeddingsDir, or model.path to a model folder (its embeddings/ is read)${modelProblem ? ` (${modelProblem})` : ''}.\n`);
    return;
  }
  const folder = embeddingsFolderFor(configured, modelFolder ?? '');
  const { embeddings, skipped } = await loadEmbeddingsFolder(folder);
  let width: number | undefined;
  if (modelFolder !== undefined) {
    try {
      width = tokenEmbeddingTable(new Uint8Array(await readFile(join(modelFolder, 'text_encoder/model.onnx')))).width;
    } catch {
      // No readable text encoder: the widths are shown, not checked.
    }
  }
  const lines = [`Textual-inversion embeddings in ${folder}${width !== undefined ? ` (the model's text encoder takes width ${width})` : ''}:`];
  if (embeddings.length === 0 && skipped.length === 0) lines.push('  none');
  for (const embedding of embeddings) {
    const fits = width === undefined || embedding.width === width;
    const what = `${embedding.vectorCount} vector(s) × ${embedding.width}  TI hash ${shortHash(embedding)}  ${embedding.file}`;
    lines.push(`  ${embedding.name}  ${what}${fits ? '' : '  (skipped: made for another model)'}`);
  }
  for (const { file, reason } of skipped) lines.push(`  ${file}  skipped: ${reason}`);
  io.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * The LoRA section of `models list`: the files of model.loraDir with size and A1111's short hash (the `Lora hashes`
 * value); nothing when no LoRA folder is configured.
 */
export async function runLoraList(options: { config: Config; io?: ModelsCommandIO }): Promise<void> {
  const folder = options.config.model.loraDir;
  if (!folder) return;
  const io = options.io ?? defaultIO();
  const library = new LoraLibrary(folder);
  const files = await library.list();
  const lines = [files.length === 0 ? `No LoRAs in ${folder} (model.loraDir).` : `LoRAs in ${folder} (model.loraDir), for <lora:name:weight> in a prompt:`];
  for (const file of files) lines.push(`  ${file.name}  ${formatBytes(file.bytes)}  ${shortLoraHash(await library.hash(file.file))}`);
  io.stdout.write(`${lines.join('\n')}\n`);
}

export function registerModelsCommand(program: Command): Command {
  const models = program.command('models').description('Get Stable Diffusion ONNX models from the Hugging Face Hub, and list them.');

  const pull = models
    .command('pull')
    .description('Download an SD ONNX model (only the pipeline files) into the Hugging Face cache; resumable and verified.')
    .argument('<repo>', 'Hub repository, owner/name or owner/name@revision (branch, tag or commit)')
    .option('--cache <dir>', 'Hub cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)')
    .option('--preview-decoder', "pull a TAESD preview decoder (its ONNX decoder only) for model.previewDecoder instead of an SD pipeline");
  addConfigOption(program, pull);
  pull.action(async (repo: string, options: { cache?: string; previewDecoder?: boolean }, self: Command) => {
    const configPath = configPathOf(self);
    const config = loadConfig(configPath ? { configPath } : {});
    await runModelsPull(repo, { config, previewDecoder: options.previewDecoder ?? false, ...(options.cache ? { cacheDir: options.cache } : {}) });
  });

  const list = models
    .command('list')
    .description('List the SD ONNX models in the Hugging Face cache, the configured model, and the LoRAs of model.loraDir.')
    .option('--cache <dir>', 'Hub cache folder (default: as for pull)');
  addConfigOption(program, list);
  list.action(async (options: { cache?: string }, self: Command) => {
    const configPath = configPathOf(self);
    const config = loadConfig(configPath ? { configPath } : {});
    runModelsList({ config, ...(options.cache ? { cacheDir: options.cache } : {}) });
    await runLoraList({ config });
  });

  const embeddings = models
    .command('embeddings')
    .description("List the textual-inversion embeddings the bot loads (model.embeddingsDir, else the model folder's embeddings/) and the files it skips.")
    .option('--dir <dir>', 'embeddings folder (default: as the bot finds it)');
  addConfigOption(program, embeddings);
  embeddings.action(async (options: { dir?: string }, self: Command) => {
    const configPath = configPathOf(self);
    const config = loadConfig(configPath ? { configPath } : {});
    await runModelsEmbeddings({ config, ...(options.dir ? { dir: options.dir } : {}) });
  });
  return models;
}
