/**
 * The `--config FILE` option for CLI commands that read the configuration. If the program already declares a global
 * `--config`, commands read that one (through optsWithGlobals); otherwise each command declares its own, so the option
 * works either way without two declarations fighting over the same flag.
 */
import type { Command } from 'commander';

const FLAGS = '--config <file>';
const DESCRIPTION = 'configuration file to use instead of config/local.json (or IMAGINE_CONFIG)';

export function addConfigOption(program: Command, command: Command): Command {
  const global = program.options.some((option) => option.long === '--config');
  return global ? command : command.option(FLAGS, DESCRIPTION);
}

/** The --config value given to this command or to the program, if any. */
export function configPathOf(command: Command): string | undefined {
  const value = command.optsWithGlobals<{ config?: unknown }>().config;
  return typeof value === 'string' && value !== '' ? value : undefined;
}
