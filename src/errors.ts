/**
 * Errors a user can cause or fix. Their `message` is one sentence meant for a person: the CLI prints it on one
 * line, the bot sends it as an ephemeral reply. Anything that is not an ImagineError is an internal fault: it is
 * logged with its stack and the user sees a generic line.
 */
export class ImagineError extends Error {
  /** A stable machine-readable code, e.g. `model_file_missing`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImagineError';
    this.code = code;
  }
}

/** A model folder is missing a file, or a file cannot be parsed or loaded. */
export class ModelFileError extends ImagineError {
  readonly file: string;
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super('model_file', `${file}: ${problem}`, options);
    this.name = 'ModelFileError';
    this.file = file;
  }
}

/** A generation request is not valid (size not a multiple of 8, unknown scheduler, …). */
export class InvalidRequestError extends ImagineError {
  constructor(message: string) {
    super('invalid_request', message);
    this.name = 'InvalidRequestError';
  }
}

/** Generation was cancelled through its AbortSignal. */
export class CancelledError extends ImagineError {
  constructor(message = 'Generation was cancelled.') {
    super('cancelled', message);
    this.name = 'CancelledError';
  }
}

export function isImagineError(error: unknown): error is ImagineError {
  return error instanceof ImagineError;
}

/**
 * The engine's process died or stopped answering while it ran a job (a native abort, out of memory, a step that never
 * ended). The job fails with this; the engine is started again for the next job.
 */
export class EngineCrashedError extends ImagineError {
  constructor(reason: string) {
    super('engine_crashed', `The image engine crashed (${reason}); it has been restarted. Try again.`);
    this.name = 'EngineCrashedError';
  }
}
