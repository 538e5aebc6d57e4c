/**
 * Fills the command definitions in commands/ from the configuration (sizes, limits) and the engine (samplers), and
 * registers them with Discord: in one guild (instant, for development) or globally.
 */
import { Routes } from 'discord-api-types/v10';
import type { REST } from 'discord.js';
import { buildCommandDefinitions, buildCommands, type CommandDefinition, type CommandLimits, type ImagineCommands } from '../../commands/index.js';
import type { Config } from '../config/index.js';
import { SAMPLER_NAMES, samplerSettings, schedulerDisplayName } from '../queue/index.js';

function commandLimitsFor(config: Pick<Config, 'generation'> & { model?: Pick<Config['model'], 'loraDir'> }): CommandLimits {
  const { limits } = config.generation;
  return {
    sizes: limits.sizes,
    samplers: SAMPLER_NAMES.map((name) => {
      const { scheduler, karras } = samplerSettings(name);
      return { value: name, label: schedulerDisplayName(scheduler, { karras }) };
    }),
    maxSteps: limits.maxSteps,
    maxCfg: limits.maxCfg,
    // Guild settings allow at most 4 images per job (see rules.settingsFromConfig).
    maxCount: Math.min(limits.maxCount, 4),
    loras: Boolean(config.model?.loraDir),
  };
}

/** The bot's commands by role, typed: the handlers read their options through these definitions. */
export function commandsFor(config: Pick<Config, 'generation'> & { model?: Pick<Config['model'], 'loraDir'> }): ImagineCommands {
  return buildCommands(commandLimitsFor(config));
}

/** The same commands as the JSON array Discord's bulk overwrite takes. */
export function commandDefinitionsFor(config: Pick<Config, 'generation'> & { model?: Pick<Config['model'], 'loraDir'> }): CommandDefinition[] {
  return buildCommandDefinitions(commandLimitsFor(config));
}

export interface DeployResult {
  scope: 'global' | 'guild';
  guildId?: string;
  names: string[];
}

/** Bulk-overwrites the application's commands (Discord keeps ids stable for unchanged names). */
export async function deployCommands(rest: REST, appId: string, definitions: CommandDefinition[], guildId: string | null): Promise<DeployResult> {
  const route = guildId ? Routes.applicationGuildCommands(appId, guildId) : Routes.applicationCommands(appId);
  const stored = (await rest.put(route, { body: definitions })) as Array<{ name: string }>;
  return { scope: guildId ? 'guild' : 'global', ...(guildId ? { guildId } : {}), names: stored.map((command) => command.name) };
}
