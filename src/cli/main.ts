#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { isImagineError } from '../errors.js';
import { PACKAGE_VERSION } from '../util/project.js';
import { ConfigError, loadConfig, type Config } from '../config/index.js';
import { registerDeployCommandsCommand } from './deploy-commands.js';
import { registerDoctorCommand } from './doctor.js';
import { registerGenerateCommand } from './generate.js';
import { registerModelsCommand } from './models.js';
import { registerSandboxCommand } from './sandbox.js';
import { registerSetupCommand } from './setup.js';
import { registerStartCommand } from './start.js';
import { registerWorkerCommand } from './worker.js';

export function buildProgram(): Command {
  const program = new Command('imagine-bot')
    .description('Self-hosted Stable Diffusion 1.5 bot for Discord, and its engine on the command line.')
    .version(PACKAGE_VERSION)
    .option('--config <file>', 'configuration file to use instead of config/local.json (or IMAGINE_CONFIG)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // generate reads the configuration only for what its flags leave open (model folder, provider), and only then,
  // so `generate --model DIR` works even before any configuration exists.
  let config: Config | undefined;
  const configured = (): Config => (config ??= loadConfig(program.opts<{ config?: string }>().config ? { configPath: program.opts<{ config: string }>().config } : {}));
  registerGenerateCommand(program, {
    modelPath: () => configured().model.path || undefined,
    provider: () => configured().model.provider,
    fuseAttention: () => configured().model.fuseAttention,
    embeddingsDir: () => configured().model.embeddingsDir,
    loraDir: () => configured().model.loraDir,
  });
  registerStartCommand(program);
  registerWorkerCommand(program);
  registerDeployCommandsCommand(program);
  registerModelsCommand(program);
  registerSetupCommand(program);
  registerDoctorCommand(program);
  registerSandboxCommand(program);
  return program;
}

/** Every failure a person can fix is one line; anything else is one line plus a hint to get the details. */
export function describeFailure(error: unknown): string {
  // A configuration can be wrong in several places at once: one line per problem.
  if (error instanceof ConfigError) return error.problems.map((problem) => `error: ${problem}`).join('\n');
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
