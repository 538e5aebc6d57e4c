/**
 * The project's logger: pino, JSON lines for machines (docker logs, journald), pino-pretty on a terminal.
 *
 * Secrets are kept out in two layers, because one is not enough:
 *  - pino's `redact` blanks known fields (token, authorization headers, HF token) in structured data;
 *  - every finished line is scrubbed of the configured secret values and of anything shaped like a Discord bot token,
 *    a Hugging Face token or an Authorization header value, which also covers secrets inside messages, error texts
 *    and stack traces (discord.js and fetch errors sometimes carry request headers).
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from './config/schema.js';

export type { Logger } from 'pino';

export const REDACTED = '[Redacted]';

/** Field paths blanked in structured log data (fast-redact syntax: `*` is one level). */
export const REDACT_PATHS: readonly string[] = [
  'token',
  '*.token',
  '*.*.token',
  'accessToken',
  '*.accessToken',
  'hfToken',
  '*.hfToken',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'Authorization',
  '*.Authorization',
  'headers.authorization',
  'headers.Authorization',
  '*.headers.authorization',
  '*.headers.Authorization',
  '*.*.headers.authorization',
  'config.discord.token',
  'config.hub.token',
];

/** Shapes of secrets, for text where no field name tells us. */
const SECRET_PATTERNS: readonly RegExp[] = [
  // Discord bot token: base64url(user id).base64url(timestamp).hmac
  /[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}/g,
  // Hugging Face user access token
  /\bhf_[A-Za-z0-9]{20,}/g,
];
const AUTH_HEADER_VALUE = /\b(Bearer|Bot|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi;
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/"]*:)[^\s@/"]+@/gi;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Returns a function that removes the given secret values and anything secret-shaped from a text. */
export function createScrubber(secrets: ReadonlyArray<string | undefined> = []): (text: string) => string {
  // Short values would blank ordinary words; real tokens are long.
  const known = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 8);
  const knownPattern = known.length > 0 ? new RegExp(known.map(escapeRegExp).join('|'), 'g') : undefined;
  return (text) => {
    let out = knownPattern ? text.replace(knownPattern, REDACTED) : text;
    for (const pattern of SECRET_PATTERNS) out = out.replace(pattern, REDACTED);
    out = out.replace(AUTH_HEADER_VALUE, `$1 ${REDACTED}`);
    out = out.replace(URL_PASSWORD, `$1${REDACTED}@`);
    return out;
  };
}

export interface CreateLoggerOptions {
  /** pino level; default LOG_LEVEL from the environment, else "info". */
  level?: string;
  /** Pretty output; default: when the destination is stdout and stdout is a terminal. */
  pretty?: boolean;
  /** Where lines go; default stdout. Tests pass a collector. */
  destination?: { write(line: string): unknown };
  /** Secret values to scrub wherever they appear (DISCORD_TOKEN, HF_TOKEN, …). */
  secrets?: ReadonlyArray<string | undefined>;
  /** Bound to every line, e.g. { module: 'queue' }. */
  bindings?: Record<string, unknown>;
}

export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const level = options.level ?? (process.env['LOG_LEVEL'] || 'info');
  const target = options.destination ?? process.stdout;
  const usePretty = options.pretty ?? (options.destination === undefined && process.stdout.isTTY === true);
  const scrub = createScrubber(options.secrets);

  // pino-pretty as a synchronous in-process stream (not a worker transport): lines reach the scrubber first and
  // nothing is lost if the process exits right after logging.
  const sink: { write(line: string): unknown } = usePretty
    ? pretty({ colorize: options.destination === undefined, sync: true, destination: target as NodeJS.WritableStream, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
    : target;
  const scrubbing: DestinationStream = { write: (line: string) => void sink.write(scrub(line)) };

  const logger = pino(
    {
      level,
      redact: { paths: [...REDACT_PATHS], censor: REDACTED },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    scrubbing,
  );
  return options.bindings ? logger.child(options.bindings) : logger;
}

/** The logger for a loaded configuration: its level, and its secrets scrubbed. */
export function createLoggerFromConfig(config: Pick<Config, 'log' | 'discord' | 'hub'>, options: Omit<CreateLoggerOptions, 'level' | 'secrets'> = {}): Logger {
  return createLogger({ ...options, level: config.log.level, secrets: [config.discord.token, config.hub.token] });
}
