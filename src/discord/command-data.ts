/**
 * Fills the command definitions in commands/ from the configuration (sizes, limits) and the engine (samplers), and
 * registers them with Discord: in one guild (instant, for development) or globally.
 */
import { Routes } from 'discord-api-types/v10';
import type { REST } from 'discord.js';
import { buildCommandDefinitions, type CommandDefinition } from '../../commands/index.js';
import type { Config } from '../config/index.js';
import { SCHEDULER_NAMES, schedulerDisplayName } from '../queue/index.js';

export function commandDefinitionsFor(config: Pick<Config, 'generation'>): CommandDefinition[] {
  const { limits } = config.generation;
  return buildCommandDefinitions({
    sizes: limits.sizes,
    samplers: SCHEDULER_NAMES.map((name) => ({ value: name, label: schedulerDisplayName(name) })),
    maxSteps: limits.maxSteps,
    maxCfg: limits.maxCfg,
    // Guild settings allow at most 4 images per job (see rules.settingsFromConfig).
    maxCount: Math.min(limits.maxCount, 4),
  });
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
