/**
 * `imagine-bot models pull <owner/name>[@revision]` and `imagine-bot models list`: getting SD ONNX models into the
 * Hugging Face cache and seeing what is there. Settings (HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE) come through
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
import { resolve } from 'node:path';

export interface ModelsCommandIO {
  stdout: ProgressOutput;
  stderr: ProgressOutput;
}

const defaultIO = (): ModelsCommandIO => ({ stdout: process.stdout, stderr: process.stderr });

/** Runs `models pull` (exported for tests and for other commands that want to offer a pull). */
export async function runModelsPull(
  repoArg: string,
  options: { cacheDir?: string; config: Config; io?: ModelsCommandIO },
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
  });
  const fetched = result.downloadedBytes > 0 ? `downloaded ${formatBytes(result.downloadedBytes)}` : 'everything was already in the cache';
  io.stdout.write(
    [
      `Pulled ${formatRepoRef(ref)} (commit ${result.commit.slice(0, 12)}): ${result.files.length} files, ${formatBytes(result.totalBytes)}; ${fetched}.`,
      `  folder: ${result.snapshotPath}`,
      `  use it: IMAGINE_MODEL=${formatRepoRef(ref)} in .env`,
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
    .option('--cache <dir>', 'Hub cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)');
  addConfigOption(program, pull);
  pull.action(async (repo: string, options: { cache?: string }, self: Command) => {
    const configPath = configPathOf(self);
    const config = loadConfig(configPath ? { configPath } : {});
    await runModelsPull(repo, { config, ...(options.cache ? { cacheDir: options.cache } : {}) });
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
  return models;
}
