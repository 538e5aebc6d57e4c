/**
 * Hub repository references and the standard Hugging Face cache layout, shared by `models pull`, `models list` and
 * the model path resolver:
 *   <cacheDir>/models--owner--name/blobs/<sha256 or git sha1>     the bytes, named by the Hub's etag
 *   <cacheDir>/models--owner--name/snapshots/<commit>/<path>      relative symlinks into blobs/
 *   <cacheDir>/models--owner--name/refs/<revision>                the commit a branch or tag pointed to when pulled
 * This is the layout huggingface_hub (Python), @huggingface/hub and transformers.js use, so a model pulled by any of
 * them is found by the others.
 */
import { join } from 'node:path';
import { ImagineError } from '../errors.js';

export const DEFAULT_REVISION = 'main';
export const COMMIT_PATTERN = /^[0-9a-f]{40}$/;
/** owner/name, as the Hub allows them: letters, digits, '-', '_', '.'; no leading or trailing '.' or '-'. */
const REPO_ID_PATTERN = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/;

export interface RepoRef {
  /** owner/name */
  repo: string;
  /** A branch, tag or commit; "main" when not given. */
  revision: string;
}

export function looksLikeRepoId(text: string): boolean {
  const [repo = ''] = text.split('@');
  return REPO_ID_PATTERN.test(repo) && !repo.includes('..');
}

/** Parses "owner/name" or "owner/name@revision". */
export function parseRepoRef(text: string): RepoRef {
  const at = text.indexOf('@');
  const repo = at === -1 ? text : text.slice(0, at);
  const revision = at === -1 ? DEFAULT_REVISION : text.slice(at + 1);
  if (!REPO_ID_PATTERN.test(repo) || repo.includes('..')) {
    throw new ImagineError('hub_repo', `"${text}" is not a Hugging Face repo id: expected owner/name or owner/name@revision.`);
  }
  if (!revision || revision.includes('..') || /[\s~^:?*[\\]/.test(revision)) {
    throw new ImagineError('hub_repo', `"${revision}" is not a valid revision (a branch, tag or commit) in "${text}".`);
  }
  return { repo, revision };
}

export function formatRepoRef(ref: RepoRef): string {
  return ref.revision === DEFAULT_REVISION ? ref.repo : `${ref.repo}@${ref.revision}`;
}

/** models--owner--name: how the cache names a model repository's folder. */
export function repoFolderName(repo: string): string {
  return `models--${repo.split('/').join('--')}`;
}

export function repoCacheFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, repoFolderName(repo));
}
