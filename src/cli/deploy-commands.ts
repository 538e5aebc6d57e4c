import { Command } from 'commander';
import { loadConfig } from '../config/index.js';
import { ImagineError } from '../errors.js';
import { commandDefinitionsFor, deployCommands } from '../discord/command-data.js';

interface DeployOptions {
  config?: string;
  guild?: string;
  global?: boolean;
  print?: boolean;
}

/**
 * `imagine-bot deploy-commands`: registers /imagine, /imagine-queue, /imagine-settings and /imagine-status.
 * In the dev guild (discord.devGuildId or --guild) they appear at once; globally they can take up to an hour.
 */
export function registerDeployCommandsCommand(program: Command): void {
  program
    .command('deploy-commands')
    .description('Register the slash commands with Discord (in the dev guild when configured, else globally).')
    .option('--config <file>', 'configuration override file (default: config/local.json or IMAGINE_CONFIG)')
    .option('--guild <id>', 'register in this guild only (instant), instead of discord.devGuildId')
    .option('--global', 'register globally even when discord.devGuildId is set')
    .option('--print', 'print the command definitions as JSON and register nothing')
    .action(async (options: DeployOptions, command: Command) => {
      // --config may be given before the subcommand too (imagine-bot --config FILE deploy-commands).
      const configPath = options.config ?? command.parent?.opts<{ config?: string }>().config;
      const config = loadConfig(configPath ? { configPath } : {});
      const definitions = commandDefinitionsFor(config);
      if (options.print) {
        process.stdout.write(`${JSON.stringify(definitions, null, 2)}\n`);
        return;
      }
      const { token, appId } = config.discord;
      if (!token || !appId) {
        throw new ImagineError('discord_not_configured', 'DISCORD_TOKEN and DISCORD_APP_ID must be set (in .env) to register commands; `imagine-bot start` prints a setup guide.');
      }
      const guildId = options.global ? null : (options.guild ?? config.discord.devGuildId);
      // discord.js takes about a second to import: only this command's registration path pays for it, not every CLI run.
      const { REST } = await import('discord.js');
      const rest = new REST({ api: config.discord.apiBase, cdn: config.discord.cdnBase, version: '10' }).setToken(token);
      const result = await deployCommands(rest, appId, definitions, guildId);
      const where = result.scope === 'guild' ? `in guild ${result.guildId} (available now)` : 'globally (may take up to an hour to appear)';
      process.stdout.write(`Registered ${result.names.map((name) => `/${name}`).join(', ')} ${where}.\n`);
    });
}
