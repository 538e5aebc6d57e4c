/**
 * `imagine-bot doctor`: checks what the bot needs before it is started (or, with --quick, while it runs, as the
 * Docker HEALTHCHECK), printing one ✔/⚠/✖ line per check and what to do about each problem. Exits non-zero when a
 * check fails; warnings do not fail.
 *
 * Checks: configuration valid; Discord token well-formed (never printed); application id; model folder complete
 * and parseable (JSON configs, tokenizer, ONNX headers, external weight files); execution provider (through the
 * engine's own resolveProvider); data folder writable; KEYV_URL reachable; and the bot's heartbeat file fresh.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ImagineError } from '../errors.js';
import { ConfigError, loadConfig, type Config, type LoadConfigOptions } from '../config/load.js';
import { SNOWFLAKE } from '../config/schema.js';
import { addConfigOption, configPathOf } from '../config/cli.js';
import { resolveModelPath } from '../hub/cache.js';
import { ensureWritableFolder } from '../util/fs.js';
import { alreadyReported } from './reported.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  /** What was checked, e.g. "Discord token". */
  name: string;
  status: CheckStatus;
  /** What was found (never a secret). */
  detail: string;
  /** What to do, when something is wrong. */
  fix?: string;
}

export interface DoctorOptions extends LoadConfigOptions {
  /** For the Docker HEALTHCHECK: no ONNX parsing, no provider probe; fast and side-effect free. */
  quick?: boolean;
  /** How long the bot's heartbeat may be silent before the bot counts as stuck (default 120 s). */
  heartbeatMaxAgeSeconds?: number;
  /** Picks the execution provider; default the engine's resolveProvider (tests may pass a stand-in). */
  resolveProvider?: (choice: Config['model']['provider']) => Promise<{ provider: string; notes: string[] }>;
}

// -------------------------------------------------------------------------------------------------------------------
// Discord token and application id

export interface TokenCheck {
  ok: boolean;
  /** The bot's user id, read from the token's first part. */
  botId?: string;
  /** What is wrong, for a person (never contains the token). */
  problem?: string;
}

function base64UrlDecode(text: string): string {
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
}

/**
 * A bot token is three base64url parts joined by dots: the bot's user id, a timestamp, and an HMAC. Checked for shape
 * only (Discord alone can say whether it is valid), to catch the usual paste mistakes early.
 */
export function checkTokenFormat(token: string): TokenCheck {
  if (/^(Bot|Bearer)\s/i.test(token)) return { ok: false, problem: 'it starts with "Bot "/"Bearer ": put only the token itself in DISCORD_TOKEN' };
  if (/^["']|["']$/.test(token)) return { ok: false, problem: 'it is wrapped in quotes: remove them' };
  if (/\s/.test(token)) return { ok: false, problem: 'it contains spaces or line breaks: copy it again' };
  const parts = token.split('.');
  if (parts.length !== 3) {
    const secretLike = parts.length === 1 && /^[A-Za-z0-9_-]{32}$/.test(token);
    return {
      ok: false,
      problem: secretLike
        ? 'it looks like the OAuth2 client secret, not the bot token: copy the token from the Bot page (Reset Token)'
        : `it has ${parts.length} part${parts.length === 1 ? '' : 's'} separated by dots instead of 3: copy it again from the Bot page`,
    };
  }
  if (!parts.every((part) => /^[A-Za-z0-9_-]+$/.test(part))) return { ok: false, problem: 'it contains characters a bot token never has: copy it again' };
  const [idPart = '', timePart = '', hmacPart = ''] = parts;
  const botId = base64UrlDecode(idPart);
  if (!SNOWFLAKE.test(botId)) return { ok: false, problem: 'its first part does not encode a bot id: copy it again from the Bot page' };
  if (timePart.length < 4 || hmacPart.length < 20) return { ok: false, problem: 'it is too short: copy it again from the Bot page' };
  return { ok: true, botId };
}

function checkDiscord(config: Config): DoctorCheck[] {
  const checks: DoctorCheck[] = [];
  const token = config.discord.token;
  let botId: string | undefined;
  if (!token) {
    checks.push({
      name: 'Discord token',
      status: 'fail',
      detail: 'DISCORD_TOKEN is not set',
      fix: 'create a bot at https://discord.com/developers/applications and put its token in .env (run `imagine-bot start` for the step-by-step guide)',
    });
  } else {
    const result = checkTokenFormat(token);
    if (result.ok) {
      botId = result.botId;
      checks.push({ name: 'Discord token', status: 'ok', detail: `well-formed, for bot user ${result.botId} (Discord checks the rest at login)` });
    } else {
      checks.push({ name: 'Discord token', status: 'fail', detail: `DISCORD_TOKEN is malformed: ${result.problem}`, fix: 'Developer Portal → your application → Bot → Reset Token, then paste it into .env' });
    }
  }
  const appId = config.discord.appId;
  if (!appId) {
    checks.push({ name: 'Application id', status: 'fail', detail: 'DISCORD_APP_ID is not set', fix: 'Developer Portal → your application → General Information → Application ID, into .env' });
  } else if (botId && botId !== appId) {
    // Applications made since 2019 share their id with their bot user; a mismatch usually means two applications.
    checks.push({ name: 'Application id', status: 'warn', detail: `${appId}, but the token belongs to bot ${botId}`, fix: 'check that DISCORD_TOKEN and DISCORD_APP_ID come from the same application' });
  } else {
    checks.push({ name: 'Application id', status: 'ok', detail: appId });
  }
  return checks;
}

// -------------------------------------------------------------------------------------------------------------------
// Model folder

/** The first bytes of a file (to check a header without reading gigabytes). */
function readHead(file: string, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const read = readSync(fd, buffer, 0, length, 0);
    return buffer.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

/**
 * The external-data files an ONNX model refers to. In the protobuf, each is a StringStringEntryProto
 * { key: "location", value: "<file>" }: bytes 0x0a 0x08 "location" 0x12 <length> <file>.
 */
export function externalDataLocations(model: Buffer): string[] {
  const marker = Buffer.from([0x0a, 0x08, ...Buffer.from('location'), 0x12]);
  const found = new Set<string>();
  for (let at = model.indexOf(marker); at !== -1; at = model.indexOf(marker, at + 1)) {
    let offset = at + marker.length;
    let length = 0;
    let shift = 0;
    for (;;) {
      const byte = model[offset++];
      if (byte === undefined) return [...found];
      length |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) break;
      shift += 7;
    }
    if (length > 0 && length < 4096) found.add(model.subarray(offset, offset + length).toString('utf8'));
  }
  return [...found];
}

/** Graphs this big keep their weights inside: scanning them for external data would read gigabytes for nothing. */
const EXTERNAL_DATA_SCAN_LIMIT = 256 * 1024 * 1024;

/** Problems with one ONNX file: missing, not ONNX, or an external weights file missing. */
function onnxProblems(folder: string, file: string, quick: boolean): string[] {
  const path = join(folder, file);
  if (!existsSync(path)) return [`${file} is missing`];
  if (quick) return [];
  const size = statSync(path).size;
  // A serialized ModelProto starts with field 1 (ir_version, varint): tag byte 0x08. An LFS pointer or an HTML error
  // page saved in its place does not.
  const head = readHead(path, 64);
  if (head[0] !== 0x08) {
    const text = head.toString('utf8');
    if (text.startsWith('version https://git-lfs')) return [`${file} is a Git LFS pointer, not the model: download the real file (git lfs pull, or imagine-bot models pull)`];
    return [`${file} is not an ONNX model`];
  }
  if (size > EXTERNAL_DATA_SCAN_LIMIT) return [];
  const dir = join(folder, file, '..');
  return externalDataLocations(readFileSync(path))
    .filter((location) => !existsSync(join(dir, location)))
    .map((location) => `${file} keeps its weights in ${location}, which is missing next to it`);
}

function jsonProblem(folder: string, file: string, needs?: string): string | undefined {
  const path = join(folder, file);
  if (!existsSync(path)) return `${file} is missing`;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return `${file} is not a JSON object`;
    if (needs && !(needs in parsed)) return `${file} has no "${needs}"`;
  } catch (error) {
    return `${file} is not valid JSON (${(error as Error).message})`;
  }
  return undefined;
}

export function checkModelFolder(folder: string, options: { quick?: boolean; safetyChecker?: boolean } = {}): DoctorCheck[] {
  const quick = options.quick === true;
  const problems: string[] = [];
  const warnings: string[] = [];
  const index = jsonProblem(folder, 'model_index.json', '_class_name');
  if (index) problems.push(index);
  for (const file of ['text_encoder/model.onnx', 'unet/model.onnx', 'vae_decoder/model.onnx']) problems.push(...onnxProblems(folder, file, quick));
  if (!quick) {
    const scheduler = jsonProblem(folder, 'scheduler/scheduler_config.json', '_class_name');
    if (scheduler) problems.push(scheduler);
    if (existsSync(join(folder, 'tokenizer', 'tokenizer.json'))) {
      const tokenizer = jsonProblem(folder, 'tokenizer/tokenizer.json', 'model');
      if (tokenizer) problems.push(tokenizer);
    } else {
      const vocab = jsonProblem(folder, 'tokenizer/vocab.json');
      if (vocab) problems.push(vocab);
      const merges = join(folder, 'tokenizer', 'merges.txt');
      if (!existsSync(merges)) problems.push('tokenizer/merges.txt is missing');
      else if (readHead(merges, 4096).toString('utf8').split('\n').filter((line) => line && !line.startsWith('#')).length === 0) {
        problems.push('tokenizer/merges.txt is empty');
      }
    }
  }
  if (options.safetyChecker) {
    if (!existsSync(join(folder, 'safety_checker', 'model.onnx'))) warnings.push('model.safetyChecker is on but the model has no safety_checker/model.onnx: images will not be checked');
    else if (!quick) problems.push(...onnxProblems(folder, 'safety_checker/model.onnx', quick));
  }
  if (problems.length > 0) {
    return [{ name: 'Model', status: 'fail', detail: `${folder}: ${problems.join('; ')}`, fix: 'pull the model again (imagine-bot models pull …) or fix the folder' }];
  }
  const checks: DoctorCheck[] = [{ name: 'Model', status: 'ok', detail: `${folder}${quick ? ' (files present)' : ' (configs, tokenizer and ONNX files readable)'}` }];
  for (const warning of warnings) checks.push({ name: 'Safety checker', status: 'warn', detail: warning, fix: 'use a model with safety_checker/, or set model.safetyChecker to false in config/local.json' });
  return checks;
}

function checkModel(config: Config, quick: boolean): DoctorCheck[] {
  let folder: string;
  try {
    folder = resolveModelPath(config.model.path, { cacheDir: config.hub.cacheDir });
  } catch (error) {
    if (!(error instanceof ImagineError)) throw error;
    return [{ name: 'Model', status: 'fail', detail: error.message, fix: 'see `imagine-bot models --help`' }];
  }
  return checkModelFolder(folder, { quick, safetyChecker: config.model.safetyChecker });
}

// -------------------------------------------------------------------------------------------------------------------
// Provider, data folder, keyv, heartbeat

async function defaultResolveProvider(choice: Config['model']['provider']): Promise<{ provider: string; notes: string[] }> {
  const { resolveProvider } = await import('../diffusion/providers.js');
  const notes: string[] = [];
  const result = await resolveProvider(choice, null, () => {});
  for (const attempt of result.attempts) if (!attempt.ok) notes.push(`${attempt.provider}: ${attempt.reason}`);
  return { provider: result.provider, notes };
}

async function checkProvider(config: Config, resolve: NonNullable<DoctorOptions['resolveProvider']>): Promise<DoctorCheck> {
  const choice = config.model.provider;
  try {
    const { provider, notes } = await resolve(choice);
    const fallback = choice === 'auto' && provider === 'cpu';
    return {
      name: 'Execution provider',
      status: fallback ? 'warn' : 'ok',
      detail: `${provider}${choice === 'auto' ? ' (auto)' : ''}${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`,
      ...(fallback ? { fix: 'generation runs on the CPU (minutes per image); for a GPU see docs/operations.md' } : {}),
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { name: 'Execution provider', status: 'fail', detail: `${choice}: ${message}`, fix: 'fix the provider, or set IMAGINE_PROVIDER=auto to fall back to the CPU' };
  }
}

function checkDataDir(config: Config): DoctorCheck {
  const dir = config.storage.dataDir;
  try {
    ensureWritableFolder(dir);
    return { name: 'Data folder', status: 'ok', detail: `${dir} is writable` };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return { name: 'Data folder', status: 'fail', detail: `${dir} is not writable (${code})`, fix: 'set IMAGINE_DATA_DIR to a writable folder, or fix its owner (in Docker: the /data volume)' };
  }
}

/** Connects to host:port and, for Redis, sends AUTH (when the URL has credentials) and PING. Resolves to a reply. */
function probeKeyv(url: URL, timeoutMs: number): Promise<string> {
  const redis = url.protocol === 'redis:' || url.protocol === 'rediss:';
  const tls = url.protocol === 'rediss:';
  const defaultPort: Record<string, number> = { 'redis:': 6379, 'rediss:': 6379, 'mongodb:': 27017, 'postgres:': 5432, 'postgresql:': 5432, 'mysql:': 3306 };
  const port = Number(url.port || defaultPort[url.protocol] || 0);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    let socket: Socket;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (error: Error | null, reply = '') => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(reply);
    };
    const onConnect = () => {
      if (!redis) return done(null, 'connected');
      const command = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
      const user = decodeURIComponent(url.username);
      const password = decodeURIComponent(url.password);
      let out = '';
      if (password) out += user ? command('AUTH', user, password) : command('AUTH', password);
      out += command('PING');
      socket.write(out);
    };
    socket = tls ? connectTls({ host, port, servername: host }, onConnect) : connectTcp({ host, port }, onConnect);
    let replies = '';
    socket.on('data', (chunk: Buffer) => {
      replies += chunk.toString('utf8');
      const lines = replies.split('\r\n').filter(Boolean);
      const error = lines.find((line) => line.startsWith('-'));
      if (error) return done(new Error(`Redis answered ${error.slice(1).split(' ')[0]}${/NOAUTH|WRONGPASS|invalid password/i.test(error) ? ' (check the password in KEYV_URL)' : ''}`));
      if (lines.includes('+PONG')) done(null, 'PONG');
    });
    socket.on('error', (error: NodeJS.ErrnoException) => done(new Error(error.code ?? error.message)));
  });
}

/** KEYV_URL without its password, for printing. */
function safeUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.password) copy.password = '***';
  return copy.href;
}

async function checkKeyv(config: Config): Promise<DoctorCheck> {
  const raw = config.storage.keyvUrl;
  if (!raw) return { name: 'Storage', status: 'ok', detail: `SQLite at ${config.storage.sqlitePath}` };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { name: 'Storage', status: 'fail', detail: 'KEYV_URL is not a URL', fix: 'e.g. KEYV_URL=redis://localhost:6379' };
  }
  if (!url.hostname) return { name: 'Storage', status: 'ok', detail: `${url.protocol}// (not a network store, not probed)` };
  try {
    const reply = await probeKeyv(url, 3000);
    return { name: 'Storage', status: 'ok', detail: `${safeUrl(url)} reachable${reply === 'PONG' ? ' (PING → PONG)' : ''}` };
  } catch (error) {
    return { name: 'Storage', status: 'fail', detail: `${safeUrl(url)} is not reachable: ${(error as Error).message}`, fix: 'start the store (docker compose up -d redis), or unset KEYV_URL to use SQLite' };
  }
}

/**
 * Backend redis: the Redis the bot and workers share answers, and at least one worker heart-beats (a failure, or
 * with --quick a warning). A worker that stopped heart-beating (killed, machine gone) is counted as gone.
 */
async function checkRedisQueue(config: Config, quick: boolean): Promise<DoctorCheck[]> {
  if (config.queue.backend !== 'redis') return [];
  const url = new URL(config.queue.redisUrl);
  try {
    const reply = await probeKeyv(url, 3000);
    if (reply !== 'PONG') throw new Error('no PONG');
  } catch (error) {
    return [{ name: 'Redis queue', status: 'fail', detail: `${safeUrl(url)} is not reachable: ${(error as Error).message}`, fix: 'start Redis (docker compose up redis) or fix REDIS_URL' }];
  }
  const checks: DoctorCheck[] = [{ name: 'Redis queue', status: 'ok', detail: `${safeUrl(url)} reachable (PING → PONG)` }];
  try {
    // Loaded only here: the local backend's HEALTHCHECK need not load BullMQ.
    const { fetchFleet, resolveTimings, timingsFromQueueConfig, DEFAULT_KEY_PREFIX } = await import('../queue/index.js');
    const fleet = await fetchFleet(config.queue.redisUrl, { prefix: DEFAULT_KEY_PREFIX, goneAfterMs: resolveTimings(timingsFromQueueConfig(config.queue)).goneAfterMs });
    const live = fleet.filter((w) => w.state !== 'gone');
    const gone = fleet.length - live.length;
    const goneNote = gone > 0 ? ` (${gone} gone)` : '';
    if (live.length === 0) {
      // --quick is the bot container's HEALTHCHECK: the bot itself is fine without workers (jobs wait), so a warning.
      checks.push({ name: 'Workers', status: quick ? 'warn' : 'fail', detail: `no worker alive${goneNote}: jobs will wait`, fix: 'start one per GPU: imagine-bot worker [--device N] (with the model, and REDIS_URL set)' });
    } else {
      const list = live.map((w) => `${w.host} pid ${w.pid} (${w.model} on ${w.provider}, ${w.state}, ${w.jobsDone} done)`).join('; ');
      checks.push({ name: 'Workers', status: 'ok', detail: `${live.length} alive${goneNote}: ${list}` });
    }
  } catch (error) {
    checks.push({ name: 'Workers', status: 'fail', detail: `could not read the worker list: ${(error as Error).message}` });
  }
  return checks;
}

/** The file a running bot touches; `doctor --quick` (the Docker HEALTHCHECK) reports a stale one. */
export const HEARTBEAT_FILE = 'heartbeat';

export function heartbeatPath(config: Pick<Config, 'storage'>): string {
  return join(config.storage.dataDir, HEARTBEAT_FILE);
}

/**
 * For `start`: writes the current time to <dataDir>/heartbeat now and every intervalMs, while the event loop is
 * alive and turning, so a HEALTHCHECK can tell a running bot from a hung one. Returns a function that stops it.
 */
export function startHeartbeat(config: Pick<Config, 'storage'>, intervalMs = 30_000): () => void {
  const file = heartbeatPath(config);
  const beat = () => {
    try {
      writeFileSync(file, `${new Date().toISOString()}\n`);
    } catch {
      // A full or read-only disk shows up in `doctor`; the bot itself carries on.
    }
  };
  mkdirSync(config.storage.dataDir, { recursive: true });
  beat();
  const timer = setInterval(beat, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

function checkHeartbeat(config: Config, maxAgeSeconds: number): DoctorCheck | undefined {
  const file = heartbeatPath(config);
  if (!existsSync(file)) return undefined;
  const ageSeconds = Math.round((Date.now() - statSync(file).mtimeMs) / 1000);
  if (ageSeconds > maxAgeSeconds) {
    return { name: 'Bot heartbeat', status: 'fail', detail: `last beat ${ageSeconds} s ago (${file})`, fix: 'the bot is stopped or hung: check its logs and restart it' };
  }
  return { name: 'Bot heartbeat', status: 'ok', detail: `last beat ${ageSeconds} s ago` };
}

// -------------------------------------------------------------------------------------------------------------------

/**
 * model.previewDecoder, when set: the TAESD decoder file it names (or finds in its folder) is there. A warning, not
 * a failure: without it the bot still runs, and its previews use the colour map.
 */
async function checkPreviewDecoder(config: Config): Promise<DoctorCheck[]> {
  const path = config.model.previewDecoder;
  if (!path) return [];
  // Imported only here: the engine's modules load ONNX Runtime, which the other checks do not need.
  const { resolveTaesdFile } = await import('../diffusion/taesd.js');
  try {
    return [{ name: 'Preview decoder', status: 'ok', detail: `TAESD previews from ${await resolveTaesdFile(path)}` }];
  } catch (error) {
    return [{
      name: 'Preview decoder',
      status: 'warn',
      detail: `${(error as Error).message}: previews will use the colour map`,
      fix: 'fetch one with imagine-bot models pull --preview-decoder owner/name and set IMAGINE_PREVIEW_DECODER to the folder it prints, or unset it',
    }];
  }
}

export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorCheck[]> {
  const quick = options.quick === true;
  let config: Config;
  try {
    config = loadConfig(options);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems.map((problem) => ({ name: 'Configuration', status: 'fail' as const, detail: problem, fix: 'see config/README.md' }));
  }
  const checks: DoctorCheck[] = [{ name: 'Configuration', status: 'ok', detail: 'valid' }];
  checks.push(...checkDiscord(config));
  // With the redis backend the bot needs no model: only a worker machine (which sets one) is checked for it.
  const needsModel = config.queue.backend === 'local' || config.model.path !== '';
  if (needsModel) checks.push(...checkModel(config, quick));
  if (needsModel && !quick) checks.push(await checkProvider(config, options.resolveProvider ?? defaultResolveProvider));
  checks.push(...(await checkPreviewDecoder(config)));
  checks.push(checkDataDir(config));
  checks.push(await checkKeyv(config));
  checks.push(...(await checkRedisQueue(config, quick)));
  const heartbeat = checkHeartbeat(config, options.heartbeatMaxAgeSeconds ?? 120);
  if (heartbeat) checks.push(heartbeat);
  return checks;
}

const MARK: Record<CheckStatus, string> = { ok: '✔', warn: '⚠', fail: '✖' };

export function formatDoctorReport(checks: readonly DoctorCheck[]): string {
  const lines: string[] = [];
  for (const check of checks) {
    lines.push(`${MARK[check.status]} ${check.name}: ${check.detail}`);
    if (check.fix && check.status !== 'ok') lines.push(`    → ${check.fix}`);
  }
  const failed = checks.filter((check) => check.status === 'fail').length;
  const warned = checks.filter((check) => check.status === 'warn').length;
  lines.push('');
  lines.push(failed === 0 ? `All checks passed${warned > 0 ? ` (${warned} warning${warned === 1 ? '' : 's'})` : ''}.` : `${failed} check${failed === 1 ? '' : 's'} failed.`);
  return lines.join('\n');
}

export function registerDoctorCommand(program: Command): Command {
  const command = program
    .command('doctor')
    .description('Check the token, model folder, execution provider, preview decoder (when set), data folder, storage and (backend redis) Redis and its workers, and say what to fix.')
    .option('--quick', 'only fast checks (configuration, files present, data folder, storage, heartbeat): for HEALTHCHECK');
  addConfigOption(program, command);
  return command.action(async (options: { quick?: boolean }, self: Command) => {
    const configPath = configPathOf(self);
    const checks = await runDoctor({ quick: options.quick === true, ...(configPath ? { configPath } : {}) });
    process.stdout.write(`${formatDoctorReport(checks)}\n`);
    const failed = checks.filter((check) => check.status === 'fail').length;
    // The report, with its count, is already printed: the error only gives main its non-zero exit status.
    if (failed > 0) throw alreadyReported('imagine.doctorFailed', `doctor found ${failed} problem${failed === 1 ? '' : 's'} (see above).`);
  });
}
