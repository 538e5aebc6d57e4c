import { ImagineError } from '../errors.js';

/** The job id is unknown (never existed, or its record expired). */
export class JobNotFoundError extends ImagineError {
  readonly jobId: string;
  constructor(jobId: string) {
    super('job_not_found', 'This job no longer exists.');
    this.name = 'JobNotFoundError';
    this.jobId = jobId;
  }
}

/** Someone other than the requester (and not an admin) tried to cancel or delete a job. */
export class NotYourJobError extends ImagineError {
  readonly jobId: string;
  constructor(jobId: string) {
    super('not_yours', 'Only the person who started this job or a server admin can do that.');
    this.name = 'NotYourJobError';
    this.jobId = jobId;
  }
}

/** The job already finished (done, failed or cancelled), so it cannot be cancelled. */
export class JobNotActiveError extends ImagineError {
  readonly jobId: string;
  readonly status: string;
  constructor(jobId: string, status: string) {
    super('job_not_active', `This job has already ${status === 'done' ? 'finished' : status === 'failed' ? 'failed' : 'been cancelled'}.`);
    this.name = 'JobNotActiveError';
    this.jobId = jobId;
    this.status = status;
  }
}

/** The queue is shutting down or was never started. */
export class QueueClosedError extends ImagineError {
  constructor() {
    super('queue_closed', 'The bot is restarting; try again in a minute.');
    this.name = 'QueueClosedError';
  }
}

/**
 * The SQLite store cannot be read as a database (SQLite's SQLITE_CORRUPT or SQLITE_NOTADB, or a failed integrity
 * check). Its message names the file and the two ways out, with the exact command that moves it (and the WAL files
 * SQLite keeps beside it, which belong to it) aside.
 */
export class StorageCorruptError extends ImagineError {
  readonly file: string;
  /** The shell command that moves the damaged files aside, so the next start creates a new, empty store. */
  readonly moveAsideCommand: string;
  constructor(file: string, problem: string, moveAsideCommand: string, options?: { cause?: unknown }) {
    super(
      'storage_corrupt',
      `the job store ${file} is damaged (${problem}). Stop the bot, then either restore the file from a backup, or move ` +
        `it aside to start with an empty store (queued jobs, guild settings and rate-limit usage are then lost): ${moveAsideCommand}`,
      options,
    );
    this.name = 'StorageCorruptError';
    this.file = file;
    this.moveAsideCommand = moveAsideCommand;
  }
}

/** A guild setting failed validation; `field` names the setting (e.g. `rateLimit.jobs`). */
export class SettingsValidationError extends ImagineError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('invalid_setting', message);
    this.name = 'SettingsValidationError';
    this.field = field;
  }
}

/**
 * A request refused before it was queued. `retryAt` (epoch seconds) is set when waiting helps; the message then
 * already contains it as a Discord timestamp `<t:…:R>`.
 */
export class AdmissionError extends ImagineError {
  readonly retryAt: number | undefined;
  constructor(code: string, message: string, retryAt?: number) {
    super(code, message);
    this.name = 'AdmissionError';
    this.retryAt = retryAt;
  }
}

export type RateLimitKind = 'window' | 'cooldown' | 'daily';

export class RateLimitedError extends AdmissionError {
  readonly kind: RateLimitKind;
  declare readonly retryAt: number;
  constructor(kind: RateLimitKind, message: string, retryAt: number) {
    super('rate_limited', message, retryAt);
    this.name = 'RateLimitedError';
    this.kind = kind;
  }
}

export class ChannelNotAllowedError extends AdmissionError {
  constructor(message: string) {
    super('channel_not_allowed', message);
    this.name = 'ChannelNotAllowedError';
  }
}

export class BlockedPromptError extends AdmissionError {
  /** The blocklist entry that matched (shown to admins in logs, not necessarily to users). */
  readonly entry: string;
  constructor(message: string, entry: string) {
    super('blocked_prompt', message);
    this.name = 'BlockedPromptError';
    this.entry = entry;
  }
}

/** A parameter is outside what the guild allows and cannot be clamped (e.g. a size not on the list). */
export class RequestLimitError extends AdmissionError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('over_limit', message);
    this.name = 'RequestLimitError';
    this.field = field;
  }
}

export class QueueFullError extends AdmissionError {
  readonly scope: 'user' | 'guild' | 'total';
  constructor(scope: 'user' | 'guild' | 'total', message: string) {
    super('queue_full', message);
    this.name = 'QueueFullError';
    this.scope = scope;
  }
}
