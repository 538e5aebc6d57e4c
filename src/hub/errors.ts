import { ImagineError } from '../errors.js';

/** A model download or lookup failed for a reason the user can act on; the message says how. */
export class HubError extends ImagineError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'HubError';
  }
}
