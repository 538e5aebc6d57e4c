import { CommanderError } from 'commander';

/**
 * For a command that has already told the person what went wrong (a guide, a report): the error only gives main.ts
 * the exit status. main.ts prints nothing more for a CommanderError, so the explanation is not repeated as an `error:`
 * line; `message` is for callers that run the command in-process.
 */
export function alreadyReported(id: string, message: string, exitCode = 1): CommanderError {
  return new CommanderError(exitCode, id, message);
}
