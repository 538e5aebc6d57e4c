/**
 * `models pull`: downloads the files a Stable Diffusion ONNX pipeline needs from a Hugging Face Hub repository into
 * the standard Hub cache, resumably, and verifies every file against the Hub's own metadata.
 *
 * @huggingface/hub does the talking to the Hub: `modelInfo` turns the revision into a commit, `listFiles` gives the
 * tree (sizes, git blob sha1, LFS sha256), `downloadFile` resolves each file (following the Hub's redirect to its CDN)
 * and returns a Blob whose `slice(offset).stream()` is a Range request. What it does not do, and is done here:
 * choosing which files to fetch (its `snapshotDownload` takes the whole repo, which for SD repos can include
 * gigabytes of PyTorch weights), resuming (`downloadFileToCacheDir` restarts from zero and keeps no `.incomplete`
 * data between runs), verifying hashes, and reporting progress.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { copyFile, mkdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { downloadFile, HubApiError, listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import { isPreviewDecoderFile, TAESD_DECODER_FILES } from '../util/taesd-files.js';
import { HubError } from './errors.js';
import { COMMIT_PATTERN, formatRepoRef, repoCacheFolder, type RepoRef } from './repo.js';

/** Folders of the diffusers ONNX Stable Diffusion layout (OnnxStableDiffusionPipeline / optimum's ORT pipeline). */
export const PIPELINE_FOLDERS = [
  'scheduler',
  'tokenizer',
  'text_encoder',
  'unet',
  'vae_decoder',
  'vae_encoder',
  'safety_checker',
  'feature_extractor',
] as const;

/** Files in those folders that the ONNX pipeline reads: graphs, external weights, configs, tokenizer text. */
const PIPELINE_FILE = /\.(onnx|pb|onnx_data|data|json|txt)$/;

/** Without these the folder is not a usable SD ONNX pipeline. */
const REQUIRED_FILES = ['model_index.json', 'text_encoder/model.onnx', 'unet/model.onnx', 'vae_decoder/model.onnx'];

/** Is this repository path part of an SD ONNX pipeline (as opposed to PyTorch weights, READMEs, samples)? */
export function isPipelineFile(path: string): boolean {
  if (path === 'model_index.json') return true;
  const [folder, ...rest] = path.split('/');
  return rest.length > 0 && (PIPELINE_FOLDERS as readonly string[]).includes(folder ?? '') && PIPELINE_FILE.test(path);
}

export interface PullProgress {
  /** `plan`: the file list is known; `file`: a file starts; `bytes`: data arrived; `done`: a file is verified. */
  kind: 'plan' | 'file' | 'bytes' | 'done';
  /** The file concerned (empty for `plan`). */
  path: string;
  /** Bytes of this file on disk so far, and its size. */
  fileBytes: number;
  fileSize: number;
  /** Bytes of all selected files on disk so far, and their total. */
  doneBytes: number;
  totalBytes: number;
  /** True when the file was already in the cache (nothing downloaded). */
  cached?: boolean;
  /** Where a resumed download picked up (bytes already on disk from an earlier run). */
  resumedAt?: number;
  fileIndex: number;
  fileCount: number;
}

export interface PullOptions extends RepoRef {
  /** The Hub cache folder (…/huggingface/hub). */
  cacheDir: string;
  /** The Hub, e.g. https://huggingface.co (HF_ENDPOINT). */
  endpoint: string;
  /** HF_TOKEN: sent as `Authorization: Bearer …` to the Hub, never logged or printed. */
  token?: string | undefined;
  onProgress?: (progress: PullProgress) => void;
  /** For tests and proxies; default the global fetch. */
  fetch?: typeof fetch;
  /**
   * What to pull: an SD ONNX pipeline (default), or a TAESD preview decoder for `model.previewDecoder` (its ONNX
   * decoder in one of the layouts of util/taesd-files.ts; encoders, PyTorch weights and the rest are left).
   */
  kind?: 'pipeline' | 'preview-decoder';
}

export interface PulledFile {
  path: string;
  size: number;
  /** Already in the cache before this pull. */
  cached: boolean;
}

export interface PullResult extends RepoRef {
  commit: string;
  /** The folder to use as the model: <cache>/models--owner--name/snapshots/<commit>. */
  snapshotPath: string;
  files: PulledFile[];
  downloadedBytes: number;
  totalBytes: number;
}

interface PlannedFile {
  path: string;
  size: number;
  /** The blob name in the cache, as the Hub's etag: sha256 for LFS files, git blob sha1 otherwise. */
  etag: string;
  /** How the content is verified: LFS files by sha256, small git files by their git blob sha1. */
  hash: 'sha256' | 'git-sha1';
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

function causeText(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as Error & { cause?: unknown }).cause;
    const detail = cause instanceof Error ? ` (${(cause as NodeJS.ErrnoException).code ?? cause.message})` : '';
    return `${error.message}${detail}`;
  }
  return String(error);
}

/** Turns Hub API failures into one line that says what to do. */
function explainHubFailure(error: unknown, options: PullOptions, what: string): HubError {
  const ref = formatRepoRef(options);
  if (error instanceof HubApiError) {
    const code = typeof error.data?.['error'] === 'string' ? error.data['error'] : '';
    if (error.statusCode === 401 || (error.statusCode === 404 && !/rev/i.test(code))) {
      return new HubError(
        'hub_not_found',
        `${options.repo} was not found on ${options.endpoint}${options.token ? '' : ', or it is private or gated and needs HF_TOKEN'}: check the name${options.token ? ' and that HF_TOKEN has access to it' : ''}.`,
        { cause: error },
      );
    }
    if (error.statusCode === 403) {
      return new HubError('hub_forbidden', `Access to ${options.repo} is restricted: accept its terms on the Hub page, then set HF_TOKEN to a token of that account.`, { cause: error });
    }
    if (error.statusCode === 404) {
      return new HubError('hub_revision', `${options.repo} has no revision "${options.revision}": ONNX exports are often on a branch such as @onnx.`, { cause: error });
    }
    return new HubError('hub_http', `${what} for ${ref} failed with HTTP ${error.statusCode} from ${options.endpoint}.`, { cause: error });
  }
  return new HubError('hub_unreachable', `Cannot reach ${options.endpoint} (${causeText(error)}): check the network, or HF_ENDPOINT.`, { cause: error });
}

/** The current content of a file, fed to a hash (to continue hashing a resumed download). */
async function hashExisting(hash: Hash, file: string): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

function newHash(plan: PlannedFile): Hash {
  if (plan.hash === 'sha256') return createHash('sha256');
  // git's blob id: sha1 over a "blob <size>\0" header, then the content.
  return createHash('sha1').update(`blob ${plan.size}\0`);
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** Points snapshots/<commit>/<path> at the blob with a relative symlink (copying where symlinks are refused). */
async function linkIntoSnapshot(blobPath: string, pointerPath: string): Promise<void> {
  await mkdir(dirname(pointerPath), { recursive: true });
  await rm(pointerPath, { force: true });
  try {
    await symlink(relative(dirname(pointerPath), blobPath), pointerPath);
  } catch {
    await copyFile(blobPath, pointerPath);
  }
}

async function closeStream(stream: WriteStream): Promise<void> {
  if (stream.closed) return;
  stream.end();
  await once(stream, 'close');
}

export async function pullModel(options: PullOptions): Promise<PullResult> {
  if (options.token !== undefined && !options.token.startsWith('hf_')) {
    throw new HubError('hub_token', 'HF_TOKEN must be a Hugging Face access token (it starts with hf_): create one at https://huggingface.co/settings/tokens.');
  }
  const repo = { type: 'model' as const, name: options.repo };
  const common = {
    hubUrl: options.endpoint.replace(/\/+$/, ''),
    ...(options.token ? { accessToken: options.token } : {}),
    fetch: rangeCheckingFetch(options.fetch ?? globalThis.fetch),
  };
  const ref = formatRepoRef(options);

  let commit: string;
  try {
    const info = await modelInfo({ ...common, name: options.repo, revision: options.revision, additionalFields: ['sha'] });
    commit = String(info.sha ?? '');
  } catch (error) {
    throw explainHubFailure(error, options, 'Looking up the revision');
  }
  if (!COMMIT_PATTERN.test(commit)) {
    throw new HubError('hub_http', `${options.endpoint} gave no commit for ${ref}: is HF_ENDPOINT a Hugging Face Hub?`);
  }

  const entries: ListFileEntry[] = [];
  try {
    for await (const entry of listFiles({ ...common, repo, revision: commit, recursive: true })) entries.push(entry);
  } catch (error) {
    throw explainHubFailure(error, options, 'Listing the files');
  }

  const previewDecoder = options.kind === 'preview-decoder';
  const wanted = previewDecoder ? isPreviewDecoderFile : isPipelineFile;
  const plan: PlannedFile[] = [];
  for (const entry of entries) {
    if (entry.type !== 'file' || !wanted(entry.path)) continue;
    if (entry.path.split('/').some((part) => part === '..' || part === '.' || part === '')) {
      throw new HubError('hub_http', `${ref} lists a file with an unsafe path: "${entry.path}".`);
    }
    // The hash names the blob file, so it must look like one: 64 hex digits (sha256) or 40 (git sha1).
    if (entry.lfs && /^[0-9a-f]{64}$/.test(entry.lfs.oid)) plan.push({ path: entry.path, size: entry.lfs.size, etag: entry.lfs.oid, hash: 'sha256' });
    else if (!entry.lfs && entry.oid && COMMIT_PATTERN.test(entry.oid)) plan.push({ path: entry.path, size: entry.size, etag: entry.oid, hash: 'git-sha1' });
    else throw new HubError('hub_http', `${ref}: the Hub gave no usable hash for ${entry.path}, so it cannot be verified.`);
  }
  const present = new Set(plan.map((file) => file.path));
  if (previewDecoder && !TAESD_DECODER_FILES.some((file) => present.has(file))) {
    throw new HubError('hub_not_onnx', `${ref} has no ONNX TAESD decoder (none of ${TAESD_DECODER_FILES.join(', ')}).`);
  }
  const missing = REQUIRED_FILES.filter((file) => !present.has(file));
  const hasTokenizer =
    present.has('tokenizer/tokenizer.json') || (present.has('tokenizer/vocab.json') && present.has('tokenizer/merges.txt'));
  if (!previewDecoder && (missing.length > 0 || !hasTokenizer)) {
    const what = missing.length > 0 ? missing.join(', ') : 'tokenizer/vocab.json and merges.txt';
    throw new HubError(
      'hub_not_onnx',
      `${ref} is not a Stable Diffusion ONNX pipeline (no ${what})${options.revision === 'main' ? `: ONNX exports are often on a branch, try ${options.repo}@onnx` : ''}.`,
    );
  }

  const storage = repoCacheFolder(options.cacheDir, options.repo);
  const snapshotPath = join(storage, 'snapshots', commit);
  const totalBytes = plan.reduce((sum, file) => sum + file.size, 0);
  let doneBytes = 0;
  let downloadedBytes = 0;
  const files: PulledFile[] = [];
  const report = (progress: Omit<PullProgress, 'doneBytes' | 'totalBytes' | 'fileCount'>, inFlight = 0) =>
    options.onProgress?.({ ...progress, doneBytes: doneBytes + inFlight, totalBytes, fileCount: plan.length });
  report({ kind: 'plan', path: '', fileBytes: 0, fileSize: 0, fileIndex: 0 });

  for (const [index, file] of plan.entries()) {
    const blobPath = join(storage, 'blobs', file.etag);
    const pointerPath = join(snapshotPath, ...file.path.split('/'));
    // Blobs are named by content hash, so one that exists with the right size is this file (possibly shared with
    // another revision). A wrong size means a damaged cache: fetch it again.
    const existing = await sizeOf(blobPath);
    if (existing === file.size) {
      await linkIntoSnapshot(blobPath, pointerPath);
      doneBytes += file.size;
      files.push({ path: file.path, size: file.size, cached: true });
      report({ kind: 'done', path: file.path, fileBytes: file.size, fileSize: file.size, cached: true, fileIndex: index });
      continue;
    }
    if (existing !== undefined) await rm(blobPath, { force: true });

    await mkdir(dirname(blobPath), { recursive: true });
    const written = await downloadBlob(file, blobPath, { ...options, ...common, commit, ref }, (fileBytes, resumedAt) => {
      const kind = fileBytes === resumedAt ? 'file' : 'bytes';
      report({ kind, path: file.path, fileBytes, fileSize: file.size, resumedAt, fileIndex: index }, fileBytes);
    });
    downloadedBytes += written;
    doneBytes += file.size;
    await linkIntoSnapshot(blobPath, pointerPath);
    files.push({ path: file.path, size: file.size, cached: false });
    report({ kind: 'done', path: file.path, fileBytes: file.size, fileSize: file.size, cached: false, fileIndex: index });
  }

  // The ref is written last, so a branch name only ever points at a snapshot whose files are all there.
  if (options.revision !== commit) {
    const refPath = join(storage, 'refs', ...options.revision.split('/'));
    await mkdir(dirname(refPath), { recursive: true });
    await writeFile(refPath, commit);
  }
  return { repo: options.repo, revision: options.revision, commit, snapshotPath, files, downloadedBytes, totalBytes };
}

/**
 * A fetch that refuses a full (200) answer to a Range request: appending a whole file to a partial one would only be
 * caught later by the hash, after downloading everything again.
 */
function rangeCheckingFetch(inner: typeof fetch): typeof fetch {
  return async (input, init) => {
    const response = await inner(input, init);
    const headers = new Headers(init?.headers);
    const range = headers.get('Range');
    if (range && range !== 'bytes=0-0' && !range.startsWith('bytes=0-') && response.status === 200) {
      await response.body?.cancel();
      throw new Error('the server ignored the Range request');
    }
    return response;
  };
}

interface DownloadContext extends PullOptions {
  hubUrl: string;
  accessToken?: string;
  fetch: typeof fetch;
  commit: string;
  ref: string;
}

/**
 * Downloads one file into blobPath through blobPath.incomplete, continuing a previous partial download with a Range
 * request, and verifying size and hash before the rename. Returns the number of bytes fetched now.
 */
async function downloadBlob(
  file: PlannedFile,
  blobPath: string,
  context: DownloadContext,
  onBytes: (fileBytes: number, resumedAt: number) => void,
): Promise<number> {
  const incomplete = `${blobPath}.incomplete`;
  let offset = (await sizeOf(incomplete)) ?? 0;
  if (offset > file.size) {
    await rm(incomplete, { force: true });
    offset = 0;
  }
  const hash = newHash(file);
  if (offset > 0) await hashExisting(hash, incomplete);
  const resumedAt = offset;
  onBytes(offset, resumedAt);

  let received = offset;
  if (offset < file.size) {
    let blob: Blob | null;
    try {
      blob = await downloadFile({
        repo: { type: 'model', name: context.repo },
        path: file.path,
        revision: context.commit,
        hubUrl: context.hubUrl,
        ...(context.accessToken ? { accessToken: context.accessToken } : {}),
        fetch: context.fetch,
        // Plain HTTP (the Hub redirects Xet-stored files to a byte-serving bridge): the path tested here, resumable
        // with Range, rather than the Xet chunk reconstruction protocol.
        xet: false,
      });
    } catch (error) {
      throw explainHubFailure(error, context, `Downloading ${file.path}`);
    }
    if (!blob) throw new HubError('hub_http', `${context.ref}: ${file.path} is listed but the Hub says it does not exist.`);
    if (blob.size !== file.size) {
      throw new HubError('hub_verify', `${file.path}: the Hub lists ${file.size} bytes but serves ${blob.size}; try again later.`);
    }

    const out = createWriteStream(incomplete, { flags: offset > 0 ? 'a' : 'w' });
    try {
      const body = Readable.fromWeb(blob.slice(offset).stream() as NodeReadableStream<Uint8Array>);
      for await (const chunk of body) {
        const bytes = chunk as Buffer;
        hash.update(bytes);
        received += bytes.length;
        if (received > file.size) throw new Error(`more data than the ${file.size} bytes listed`);
        if (!out.write(bytes)) await once(out, 'drain');
        onBytes(received, resumedAt);
      }
    } catch (error) {
      await closeStream(out);
      throw new HubError(
        'hub_interrupted',
        `${file.path}: download interrupted at ${formatBytes(received)} of ${formatBytes(file.size)} (${causeText(error)}); run the same command again to resume.`,
        { cause: error },
      );
    }
    await closeStream(out);
  }

  const onDisk = (await sizeOf(incomplete)) ?? 0;
  const digest = hash.digest('hex');
  if (onDisk !== file.size || received !== file.size) {
    await rm(incomplete, { force: true });
    throw new HubError('hub_verify', `${file.path}: got ${onDisk} bytes, the Hub lists ${file.size}; the partial file was deleted, run the command again.`);
  }
  if (digest !== file.etag) {
    // A damaged file must not be resumed from or linked into the snapshot.
    await rm(incomplete, { force: true });
    const kind = file.hash === 'sha256' ? 'sha256' : 'git sha1';
    throw new HubError(
      'hub_verify',
      `${file.path}: ${kind} ${digest.slice(0, 12)}… does not match the Hub's ${file.etag.slice(0, 12)}…; the damaged download was deleted, run the command again.`,
    );
  }
  await rename(incomplete, blobPath);
  return received - offset;
}
