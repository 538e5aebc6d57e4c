import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeHub, type FakeHub, type FakeHubOptions } from './hub-server.js';
import { pullModel, type PullOptions, type PullProgress } from '../../src/hub/pull.js';
import { HubError } from '../../src/hub/errors.js';
import { listCachedModels, resolveModelPath } from '../../src/hub/cache.js';
import { parseRepoRef } from '../../src/hub/repo.js';

const FIXTURE = new URL('../fixtures/tiny-sd/', import.meta.url).pathname;
const REPO = 'test-org/tiny-sd';
const TOKEN = 'hf_TestTokenAbcdefghijklmnopqrstuv';
/** Every file of the fixture: all of them belong to the ONNX pipeline. */
const FIXTURE_FILES = [
  'feature_extractor/preprocessor_config.json',
  'model_index.json',
  'safety_checker/model.onnx',
  'scheduler/scheduler_config.json',
  'text_encoder/model.onnx',
  'tokenizer/merges.txt',
  'tokenizer/special_tokens_map.json',
  'tokenizer/tokenizer_config.json',
  'tokenizer/vocab.json',
  'unet/model.onnx',
  'unet/weights.pb',
  'vae_decoder/model.onnx',
  'vae_encoder/model.onnx',
];

async function withHub(t: { after(fn: () => unknown): void }, options: Partial<FakeHubOptions> = {}): Promise<{ hub: FakeHub; cacheDir: string; pull: (extra?: Partial<PullOptions>) => Promise<Awaited<ReturnType<typeof pullModel>>> }> {
  const hub = await startFakeHub({ repo: REPO, folder: FIXTURE, ...options });
  const cacheDir = mkdtempSync(join(tmpdir(), 'imagine-hub-'));
  t.after(async () => {
    await hub.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });
  const pull = (extra: Partial<PullOptions> = {}) => pullModel({ repo: REPO, revision: 'main', cacheDir, endpoint: hub.url, ...extra });
  return { hub, cacheDir, pull };
}

async function rejection(promise: Promise<unknown>): Promise<HubError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof HubError, `expected a HubError, got ${String(error)}`);
    assert.ok(!error.message.includes('\n'), 'one line');
    return error;
  }
  assert.fail('expected the pull to fail');
}

function walkFiles(folder: string, prefix = ''): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walkFiles(join(folder, entry.name), `${prefix}${entry.name}/`) : [`${prefix}${entry.name}`],
  );
}

test('the fake Hub reports git blob ids as git computes them', async (t) => {
  const { hub } = await withHub(t);
  const file = hub.files.find((f) => f.path === 'model_index.json');
  const fromGit = execFileSync('git', ['hash-object', join(FIXTURE, 'model_index.json')], { encoding: 'utf8' }).trim();
  assert.equal(file?.oid, fromGit);
});

test('a full pull lays out the standard Hub cache with only the pipeline files, verified', async (t) => {
  const { hub, cacheDir, pull } = await withHub(t, {
    pageSize: 5,
    token: TOKEN,
    extraFiles: { 'README.md': '# tiny', 'unet/diffusion_pytorch_model.safetensors': 'not for onnx', 'v1-5-pruned.ckpt': 'x' },
  });
  const events: PullProgress[] = [];
  const result = await pull({ token: TOKEN, onProgress: (p) => events.push(p) });

  const storage = join(cacheDir, 'models--test-org--tiny-sd');
  assert.equal(result.commit, hub.commit);
  assert.equal(result.snapshotPath, join(storage, 'snapshots', hub.commit));
  assert.equal(readFileSync(join(storage, 'refs', 'main'), 'utf8'), hub.commit);
  assert.deepEqual(walkFiles(result.snapshotPath).sort(), FIXTURE_FILES);
  for (const path of FIXTURE_FILES) {
    const pointer = join(result.snapshotPath, path);
    assert.ok(lstatSync(pointer).isSymbolicLink(), `${path} is a link into blobs/`);
    assert.ok(!readlinkSync(pointer).startsWith('/'), 'relative links, so the cache can be moved');
    assert.ok(readFileSync(pointer).equals(readFileSync(join(FIXTURE, path))), `${path} has the fixture's bytes`);
  }
  // Blobs are named as the Hub names them: sha256 for LFS files, git blob sha1 for the rest.
  const blobs = readdirSync(join(storage, 'blobs')).sort();
  const expectedBlobs = hub.files.filter((f) => FIXTURE_FILES.includes(f.path)).map((f) => (f.lfs ? f.sha256 : f.oid)).sort();
  assert.deepEqual(blobs, expectedBlobs);
  assert.equal(result.totalBytes, FIXTURE_FILES.reduce((sum, p) => sum + statSync(join(FIXTURE, p)).size, 0));
  assert.equal(result.downloadedBytes, result.totalBytes);

  // The tree came in several pages; nothing outside the pipeline was requested.
  assert.ok(hub.requests.filter((r) => r.url.includes('/tree/')).length >= 3);
  assert.ok(!hub.requests.some((r) => /README|safetensors|ckpt/.test(r.url)));
  // The token went to the Hub on every request, and not to the CDN the Hub redirects LFS files to.
  const hubRequests = hub.requests.filter((r) => r.server === 'hub');
  const cdnRequests = hub.requests.filter((r) => r.server === 'cdn');
  assert.ok(hubRequests.length > 0 && cdnRequests.length > 0);
  assert.ok(hubRequests.every((r) => r.authorization === `Bearer ${TOKEN}`));
  assert.ok(cdnRequests.every((r) => r.authorization === undefined));

  // Progress: a plan, then every file done, ending at the total.
  assert.equal(events[0]?.kind, 'plan');
  assert.equal(events.filter((e) => e.kind === 'done').length, FIXTURE_FILES.length);
  assert.equal(events.at(-1)?.doneBytes, result.totalBytes);

  // Pulling again finds everything in the cache and downloads nothing.
  const before = hub.requests.length;
  const again = await pull({ token: TOKEN });
  assert.equal(again.downloadedBytes, 0);
  assert.ok(again.files.every((f) => f.cached));
  assert.ok(!hub.requests.slice(before).some((r) => r.url.includes('/resolve/') || r.server === 'cdn'));
});

test('the pulled folder loads in onnxruntime, external weights included, through the cache symlinks', async (t) => {
  const { pull } = await withHub(t);
  const result = await pull();
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(join(result.snapshotPath, 'unet', 'model.onnx'));
  t.after(() => session.release());
  assert.ok(session.inputNames.includes('timestep'));
});

test('an interrupted download resumes with a Range request on the next run', async (t) => {
  const cut = 1_000_000;
  const { hub, cacheDir, pull } = await withHub(t, { dropAfter: { path: 'unet/weights.pb', bytes: cut } });
  const weights = hub.files.find((f) => f.path === 'unet/weights.pb');
  assert.ok(weights);

  const error = await rejection(pull());
  assert.equal(error.code, 'hub_interrupted');
  assert.match(error.message, /^unet\/weights\.pb: download interrupted at .* of 4\.39 MB .*run the same command again to resume\.$/);
  const partial = join(cacheDir, 'models--test-org--tiny-sd', 'blobs', `${weights.sha256}.incomplete`);
  const kept = statSync(partial).size;
  assert.ok(kept > 0 && kept <= cut, `kept ${kept} bytes`);
  assert.ok(!existsSync(join(cacheDir, 'models--test-org--tiny-sd', 'refs', 'main')), 'no ref to an unfinished snapshot');

  const before = hub.requests.length;
  const events: PullProgress[] = [];
  const result = await pull({ onProgress: (p) => events.push(p) });
  const second = hub.requests.slice(before);
  const expectedRange = `bytes=${kept}-${weights.content.length - 1}`;
  assert.ok(
    second.some((r) => r.server === 'cdn' && r.url.includes(weights.sha256) && r.range === expectedRange),
    `the CDN saw ${expectedRange}; it saw ${JSON.stringify(second.filter((r) => r.server === 'cdn').map((r) => r.range))}`,
  );
  assert.equal(events.find((e) => e.kind === 'file' && e.path === 'unet/weights.pb')?.resumedAt, kept);
  assert.ok(readFileSync(join(result.snapshotPath, 'unet', 'weights.pb')).equals(weights.content));
  assert.ok(!existsSync(partial));
  // Files finished in the first run were not fetched again.
  assert.ok(!second.some((r) => r.url.includes('/resolve/') && r.url.includes('text_encoder')));
  assert.equal(result.downloadedBytes, weights.content.length - kept + FIXTURE_FILES.filter((p) => p > 'unet/weights.pb').reduce((s, p) => s + statSync(join(FIXTURE, p)).size, 0));
});

test('a corrupted LFS file is caught by its sha256 and kept out of the snapshot', async (t) => {
  const { hub, cacheDir, pull } = await withHub(t, { corrupt: { path: 'unet/model.onnx' } });
  const file = hub.files.find((f) => f.path === 'unet/model.onnx');
  assert.ok(file);
  const error = await rejection(pull());
  assert.equal(error.code, 'hub_verify');
  assert.match(error.message, /^unet\/model\.onnx: sha256 [0-9a-f]{12}… does not match the Hub's [0-9a-f]{12}…; the damaged download was deleted, run the command again\.$/);
  assert.ok(error.message.includes(file.sha256.slice(0, 12)));
  const storage = join(cacheDir, 'models--test-org--tiny-sd');
  assert.ok(!existsSync(join(storage, 'snapshots', hub.commit, 'unet', 'model.onnx')));
  assert.ok(!readdirSync(join(storage, 'blobs')).some((name) => name.startsWith(file.sha256)));
  assert.throws(() => resolveModelPath(REPO, { cacheDir }), /is not in the Hugging Face cache/);
});

test('a corrupted small file is caught by its git blob sha1', async (t) => {
  const { hub, pull } = await withHub(t, { corrupt: { path: 'tokenizer/vocab.json' } });
  const file = hub.files.find((f) => f.path === 'tokenizer/vocab.json');
  assert.ok(file && !file.lfs);
  const error = await rejection(pull());
  assert.match(error.message, /^tokenizer\/vocab\.json: git sha1 [0-9a-f]{12}… does not match the Hub's [0-9a-f]{12}…/);
});

test('HF_TOKEN: required by a private repo, checked for its form, never in error messages', async (t) => {
  const { hub, pull } = await withHub(t, { token: TOKEN });
  const without = await rejection(pull());
  assert.equal(without.code, 'hub_not_found');
  assert.match(without.message, /test-org\/tiny-sd was not found on http:\/\/127\.0\.0\.1:\d+, or it is private or gated and needs HF_TOKEN/);
  const wrong = await rejection(pull({ token: 'hf_WrongTokenAbcdefghijklmnopqrstu' }));
  assert.match(wrong.message, /check the name and that HF_TOKEN has access to it/);
  assert.ok(!wrong.message.includes('hf_WrongToken'));
  const malformed = await rejection(pull({ token: 'not-a-token' }));
  assert.equal(malformed.code, 'hub_token');
  assert.ok(!malformed.message.includes('not-a-token'));
  assert.ok(hub.requests.some((r) => r.authorization === 'Bearer hf_WrongTokenAbcdefghijklmnopqrstu'));
});

test('a repository without the ONNX pipeline is refused before downloading anything', async (t) => {
  const folder = mkdtempSync(join(tmpdir(), 'imagine-notonnx-'));
  t.after(() => rmSync(folder, { recursive: true, force: true }));
  writeFileSync(join(folder, 'model_index.json'), '{"_class_name":"StableDiffusionPipeline"}');
  mkdirSync(join(folder, 'unet'));
  writeFileSync(join(folder, 'unet', 'diffusion_pytorch_model.safetensors'), 'weights');
  const { hub, pull } = await withHub(t, { folder });
  const error = await rejection(pull());
  assert.equal(error.code, 'hub_not_onnx');
  assert.match(error.message, /^test-org\/tiny-sd is not a Stable Diffusion ONNX pipeline \(no text_encoder\/model\.onnx, unet\/model\.onnx, vae_decoder\/model\.onnx\): ONNX exports are often on a branch, try test-org\/tiny-sd@onnx\.$/);
  assert.ok(!hub.requests.some((r) => r.url.includes('/resolve/')));
});

test('a branch other than main is pulled and recorded under refs/', async (t) => {
  const { hub, cacheDir, pull } = await withHub(t, { branch: 'onnx' });
  const missing = await rejection(pull());
  assert.equal(missing.code, 'hub_revision');
  assert.match(missing.message, /has no revision "main"/);
  const result = await pull({ revision: 'onnx' });
  assert.equal(readFileSync(join(cacheDir, 'models--test-org--tiny-sd', 'refs', 'onnx'), 'utf8'), hub.commit);
  assert.equal(resolveModelPath('test-org/tiny-sd@onnx', { cacheDir }), result.snapshotPath);
  assert.equal(resolveModelPath(`test-org/tiny-sd@${hub.commit}`, { cacheDir }), result.snapshotPath);
  assert.throws(() => resolveModelPath('test-org/tiny-sd', { cacheDir }), /Model test-org\/tiny-sd is not in the Hugging Face cache .*: run `imagine-bot models pull test-org\/tiny-sd`\./);
  const [listed, ...others] = listCachedModels(cacheDir);
  assert.equal(others.length, 0);
  assert.deepEqual({ ...listed, size: undefined }, { repo: REPO, commit: hub.commit, refs: ['onnx'], path: result.snapshotPath, complete: true, size: undefined });
  assert.equal(listed?.size, result.totalBytes);
});

test('an unreachable Hub gives one line naming the endpoint', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as { port: number };
      server.close(() => resolve(free));
    });
  });
  const cacheDir = mkdtempSync(join(tmpdir(), 'imagine-hub-'));
  t.after(() => rmSync(cacheDir, { recursive: true, force: true }));
  const error = await rejection(pullModel({ repo: REPO, revision: 'main', cacheDir, endpoint: `http://127.0.0.1:${port}` }));
  assert.equal(error.code, 'hub_unreachable');
  assert.match(error.message, new RegExp(`^Cannot reach http://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*\\): check the network, or HF_ENDPOINT\\.$`));
});

test('resolveModelPath: folders as they are, clear errors otherwise', (t) => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'imagine-hub-'));
  t.after(() => rmSync(cacheDir, { recursive: true, force: true }));
  assert.equal(resolveModelPath(FIXTURE, { cacheDir }), FIXTURE.replace(/\/$/, ''));
  assert.equal(resolveModelPath('test/fixtures/tiny-sd', { cacheDir, cwd: new URL('../..', import.meta.url).pathname }), FIXTURE.replace(/\/$/, ''));
  assert.throws(() => resolveModelPath('', { cacheDir }), /^HubError: No model configured: set IMAGINE_MODEL in \.env/);
  assert.throws(() => resolveModelPath('./models/sd15', { cacheDir, cwd: '/srv' }), /Model folder \/srv\/models\/sd15 does not exist/);
  assert.throws(
    () => resolveModelPath('someone/sd15-onnx@onnx', { cacheDir }),
    /^HubError: Model someone\/sd15-onnx@onnx is not in the Hugging Face cache \(.*\): run `imagine-bot models pull someone\/sd15-onnx@onnx`\.$/,
  );
});

test('repo references parse as owner/name[@revision]', () => {
  assert.deepEqual(parseRepoRef('owner/name'), { repo: 'owner/name', revision: 'main' });
  assert.deepEqual(parseRepoRef('owner/name@onnx'), { repo: 'owner/name', revision: 'onnx' });
  assert.deepEqual(parseRepoRef('owner/name@refs/pr/1'), { repo: 'owner/name', revision: 'refs/pr/1' });
  assert.throws(() => parseRepoRef('just-a-name'), /is not a Hugging Face repo id/);
  assert.throws(() => parseRepoRef('owner/../etc'), /is not a Hugging Face repo id/);
  assert.throws(() => parseRepoRef('owner/name@'), /is not a valid revision/);
});
