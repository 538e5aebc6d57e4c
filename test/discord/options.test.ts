/**
 * The typed option reader against discord.js' own option resolver, fed option data in the shape Discord sends it,
 * for the real command definitions in commands/.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApplicationCommandOptionType } from 'discord-api-types/v10';
import { Client, CommandInteractionOptionResolver, type CommandInteractionOption } from 'discord.js';
import { loadConfig } from '../../src/config/index.js';
import { commandsFor } from '../../src/discord/command-data.js';
import { OutdatedCommandError, readOptions, readSubcommand } from '../../src/discord/options.js';

const client = new Client({ intents: [] });
// discord.js builds its resolver inside each interaction (the constructor is private in its typings); the same class
// is used here, so subcommand hoisting and lookups are discord.js' own.
type ResolverConstructor = new (client: Client, options: CommandInteractionOption[], resolved: object) => CommandInteractionOptionResolver;
const resolver = (options: CommandInteractionOption[]) => new (CommandInteractionOptionResolver as unknown as ResolverConstructor)(client, options, {});
const commands = commandsFor(loadConfig({ env: {}, cwd: '/nonexistent-folder-for-defaults' }));
const { String: STRING, Integer: INTEGER, Number: NUMBER, Subcommand: SUBCOMMAND, Channel: CHANNEL } = ApplicationCommandOptionType;

describe('typed option reader', () => {
  test('/imagine: the options given, with the types Discord sent, and none of the others', () => {
    const options = readOptions(
      resolver([
        { name: 'prompt', type: STRING, value: 'a lighthouse' },
        { name: 'seed', type: STRING, value: '18446744073709551615' },
        { name: 'steps', type: INTEGER, value: 12 },
        { name: 'cfg', type: NUMBER, value: 6.5 },
      ]),
      commands.imagine.options,
    );
    assert.deepEqual(options, { prompt: 'a lighthouse', seed: '18446744073709551615', steps: 12, cfg: 6.5 });
  });

  test('a subcommand and its options; a channel option arrives as the channel id', () => {
    const rateLimit = readSubcommand(
      resolver([{ name: 'rate-limit', type: SUBCOMMAND, options: [{ name: 'jobs', type: INTEGER, value: 3 }, { name: 'daily', type: INTEGER, value: 0 }] }]),
      commands.settings.options,
    );
    assert.deepEqual(rateLimit, { subcommand: 'rate-limit', options: { jobs: 3, daily: 0 } });
    const channels = readSubcommand(
      resolver([{ name: 'channels', type: SUBCOMMAND, options: [{ name: 'action', type: STRING, value: 'add' }, { name: 'channel', type: CHANNEL, value: '1234567890123' }] }]),
      commands.settings.options,
    );
    assert.deepEqual(channels, { subcommand: 'channels', options: { action: 'add', channel: '1234567890123' } });
    assert.deepEqual(readSubcommand(resolver([{ name: 'show', type: SUBCOMMAND }]), commands.settings.options), { subcommand: 'show', options: {} });
  });

  test('options in another shape than the definition mean an outdated registration, told to the user', () => {
    const outdated = (read: () => unknown, detail: RegExp) =>
      assert.throws(read, (error: unknown) => error instanceof OutdatedCommandError && error.code === 'command_outdated' && detail.test(error.message) && /deploy-commands/.test(error.message));
    outdated(() => readOptions(resolver([{ name: 'prompt', type: STRING, value: 'x' }, { name: 'steps', type: STRING, value: '12' }]), commands.imagine.options), /option "steps" has another type/);
    outdated(() => readOptions(resolver([{ name: 'steps', type: INTEGER, value: 12 }]), commands.imagine.options), /option "prompt" is missing/);
    outdated(() => readSubcommand(resolver([{ name: 'colours', type: SUBCOMMAND, options: [] }]), commands.settings.options), /subcommand "colours" is unknown/);
  });
});
