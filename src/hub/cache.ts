/**
 * Reading the Hub cache: which SD ONNX models are there (`models list`), and turning the configured `model.path`
 * (a folder, or a repo id) into a folder (`resolveModelPath`). Synchronous: both run once, at start or in a CLI
 * command, over a handful of directory entries.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { defaultHubCacheDir } from '../config/load.js';
import { HubError } from './errors.js';
import { COMMIT_PATTERN, formatRepoRef, looksLikeRepoId, parseRepoRef, repoCacheFolder } from './repo.js';

export interface CachedModel {
  /** owner/name */
  repo: string;
  commit: string;
  /** Branches or tags pulled that point at this commit (e.g. ["onnx"]). */
  refs: string[];
  /** The snapshot folder: what model.path resolves to. */
  path: string;
  /** Bytes of all files in the snapshot. */
  size: number;
  /** The required pipeline files are all there (a pull that was interrupted leaves this false). */
  complete: boolean;
}

/** Files without which a folder is not an SD ONNX pipeline. Checked here and by `doctor` in more depth. */
export const REQUIRED_MODEL_FILES = ['model_index.json', 'text_encoder/model.onnx', 'unet/model.onnx', 'vae_decoder/model.onnx'] as const;

export function isCompleteModelFolder(folder: string): boolean {
  return REQUIRED_MODEL_FILES.every((file) => existsSync(join(folder, file)));
}

function folderSize(folder: string): number {
  let total = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const full = join(folder, entry.name);
    try {
      // statSync follows the snapshot's symlinks to the blobs.
      const info = statSync(full);
      total += info.isDirectory() ? folderSize(full) : info.size;
    } catch {
      // A dangling link (blob removed by hand): counts as nothing.
    }
  }
  return total;
}

/** refs/ holds one file per branch or tag; names with slashes (refs/pr/1) are nested folders. */
function readRefs(refsFolder: string, prefix = ''): Array<{ name: string; commit: string }> {
  if (!existsSync(refsFolder)) return [];
  const out: Array<{ name: string; commit: string }> = [];
  for (const entry of readdirSync(refsFolder, { withFileTypes: true })) {
    const full = join(refsFolder, entry.name);
    const name = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...readRefs(full, name));
    else out.push({ name, commit: readFileSync(full, 'utf8').trim() });
  }
  return out;
}

/** The SD ONNX pipelines in the Hub cache (repositories with a model_index.json in a snapshot). */
export function listCachedModels(cacheDir: string): CachedModel[] {
  if (!existsSync(cacheDir)) return [];
  const models: CachedModel[] = [];
  for (const entry of readdirSync(cacheDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !entry.name.startsWith('models--')) continue;
    const repo = entry.name.slice('models--'.length).split('--').join('/');
    const storage = join(cacheDir, entry.name);
    const snapshots = join(storage, 'snapshots');
    if (!existsSync(snapshots)) continue;
    const refs = readRefs(join(storage, 'refs'));
    for (const commit of readdirSync(snapshots)) {
      const path = join(snapshots, commit);
      if (!existsSync(join(path, 'model_index.json'))) continue;
      models.push({
        repo,
        commit,
        refs: refs.filter((ref) => ref.commit === commit).map((ref) => ref.name),
        path,
        size: folderSize(path),
        complete: isCompleteModelFolder(path),
      });
    }
  }
  return models.sort((a, b) => a.repo.localeCompare(b.repo) || a.commit.localeCompare(b.commit));
}

export interface ResolveModelOptions {
  /** The Hub cache folder (config.hub.cacheDir); default as huggingface_hub finds it from the environment. */
  cacheDir?: string;
  /** Relative folders are relative to this; default process.cwd(). */
  cwd?: string;
}

/**
 * The model folder for `model.path`: a folder as it is, or a Hub repo id `owner/name[@revision]` as its snapshot in
 * the cache. Throws a one-line HubError saying how to get the model when it is not there.
 */
export function resolveModelPath(pathOrRepo: string, options: ResolveModelOptions = {}): string {
  const wanted = pathOrRepo.trim();
  const cacheDir = options.cacheDir ?? defaultHubCacheDir();
  if (!wanted) {
    throw new HubError(
      'model_not_configured',
      'No model configured: set IMAGINE_MODEL in .env to a model folder, or to a Hub repo pulled with `imagine-bot models pull owner/name@revision`.',
    );
  }
  const folder = resolve(options.cwd ?? process.cwd(), wanted);
  if (existsSync(folder) && statSync(folder).isDirectory()) return folder;

  const looksLikeFolder = wanted.startsWith('.') || wanted.startsWith('/') || wanted.startsWith('~') || !looksLikeRepoId(wanted);
  if (looksLikeFolder) {
    throw new HubError('model_missing', `Model folder ${folder} does not exist: set IMAGINE_MODEL to a model folder, or pull one with \`imagine-bot models pull owner/name@revision\`.`);
  }

  const ref = parseRepoRef(wanted);
  const storage = repoCacheFolder(cacheDir, ref.repo);
  const pullHint = `run \`imagine-bot models pull ${formatRepoRef(ref)}\``;
  let commit: string | undefined;
  if (COMMIT_PATTERN.test(ref.revision)) commit = ref.revision;
  else {
    const refFile = join(storage, 'refs', ...ref.revision.split('/'));
    if (existsSync(refFile)) commit = readFileSync(refFile, 'utf8').trim();
  }
  const snapshot = commit ? join(storage, 'snapshots', commit) : undefined;
  if (!snapshot || !existsSync(snapshot)) {
    throw new HubError('model_missing', `Model ${formatRepoRef(ref)} is not in the Hugging Face cache (${cacheDir}): ${pullHint}.`);
  }
  if (!isCompleteModelFolder(snapshot)) {
    throw new HubError('model_incomplete', `Model ${formatRepoRef(ref)} is only partly downloaded (${snapshot}): ${pullHint} again to finish it.`);
  }
  return snapshot;
}
