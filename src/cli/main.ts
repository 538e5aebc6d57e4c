#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { isImagineError } from '../diffusion/errors.js';
import { PACKAGE_VERSION } from '../util/project.js';
import { registerGenerateCommand } from './generate.js';


export function buildProgram(): Command {
  const program = new Command('imagine-bot')
    .description('Self-hosted Stable Diffusion 1.5 bot for Discord, and its engine on the command line.')
    .version(PACKAGE_VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerGenerateCommand(program);
  return program;
}

/** Every failure a person can fix is one line; anything else is one line plus a hint to get the details. */
export function describeFailure(error: unknown): string {
  if (isImagineError(error)) return `error: ${error.message}`;
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  return `error: internal error: ${message} (set IMAGINE_DEBUG=1 for the stack trace)`;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode; // commander already printed its one-line message
    process.stderr.write(`${describeFailure(error)}\n`);
    if (process.env.IMAGINE_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
