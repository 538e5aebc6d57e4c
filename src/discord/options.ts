/**
 * Reads a command's options with the types its definition in commands/ gives them. The definitions are
 * `as const satisfies CommandDefinition`, so `readOptions(interaction.options, commands.imagine.options)` is typed
 * `{ prompt: string; negative?: string; steps?: number; … }`: a handler never names an option in a string the
 * compiler cannot check, and renaming or retyping an option in commands/ is a type error where it is read.
 *
 * At run time the definition drives the reading too: an option whose type differs from the definition, or a
 * required one that is missing, means Discord holds an older registration of the command than this bot serves.
 */
import { ApplicationCommandOptionType } from 'discord-api-types/v10';
import type { CommandInteractionOption } from 'discord.js';
import { ImagineError } from '../errors.js';

/** What the reader uses of an option's definition (literal types, thanks to `as const`). */
export interface OptionDefinition {
  readonly type: ApplicationCommandOptionType;
  readonly name: string;
  readonly required?: boolean;
}

export interface SubcommandDefinition {
  readonly type: ApplicationCommandOptionType.Subcommand;
  readonly name: string;
  readonly options?: readonly OptionDefinition[];
}

/** The value each option type arrives as. Users, channels, roles and attachments arrive as their ids. */
interface ValueByType {
  [ApplicationCommandOptionType.String]: string;
  [ApplicationCommandOptionType.Integer]: number;
  [ApplicationCommandOptionType.Number]: number;
  [ApplicationCommandOptionType.Boolean]: boolean;
  [ApplicationCommandOptionType.User]: string;
  [ApplicationCommandOptionType.Channel]: string;
  [ApplicationCommandOptionType.Role]: string;
  [ApplicationCommandOptionType.Mentionable]: string;
  /** The attachment's id; the handler reads the attachment itself (`options.getAttachment`). */
  [ApplicationCommandOptionType.Attachment]: string;
}

/** The same table at run time, as `typeof` names. */
const JS_TYPE: { [T in keyof ValueByType]: 'string' | 'number' | 'boolean' } = {
  [ApplicationCommandOptionType.String]: 'string',
  [ApplicationCommandOptionType.Integer]: 'number',
  [ApplicationCommandOptionType.Number]: 'number',
  [ApplicationCommandOptionType.Boolean]: 'boolean',
  [ApplicationCommandOptionType.User]: 'string',
  [ApplicationCommandOptionType.Channel]: 'string',
  [ApplicationCommandOptionType.Role]: 'string',
  [ApplicationCommandOptionType.Mentionable]: 'string',
  [ApplicationCommandOptionType.Attachment]: 'string',
};

type ValueOf<O extends OptionDefinition> = O['type'] extends keyof ValueByType ? ValueByType[O['type']] : never;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The options a definition declares, as one object: required ones always present, the others optional. */
export type OptionValues<Options extends readonly OptionDefinition[] | undefined> = Options extends readonly OptionDefinition[]
  ? Simplify<
      { [O in Options[number] as O extends { readonly required: true } ? O['name'] : never]: ValueOf<O> } & {
        [O in Options[number] as O extends { readonly required: true } ? never : O['name']]?: ValueOf<O>;
      }
    >
  : Record<never, never>;

/** One subcommand and its options, as a union over the subcommands a definition declares. */
export type SubcommandValues<Subcommands extends readonly SubcommandDefinition[]> = Subcommands[number] extends infer S
  ? S extends SubcommandDefinition
    ? { subcommand: S['name']; options: OptionValues<S['options']> }
    : never
  : never;

/** The part of discord.js' option resolver the reader needs (it finds a subcommand's options by name too). */
export interface OptionSource {
  get(name: string): CommandInteractionOption | null;
  getSubcommand(required: false): string | null;
}

/** Discord sent options in another shape than the definition the bot serves: its registration is out of date. */
export class OutdatedCommandError extends ImagineError {
  constructor(detail: string) {
    super('command_outdated', `This command is registered in an older form than the bot serves (${detail}); the bot's operator can update it with \`imagine-bot deploy-commands\`.`);
    this.name = 'OutdatedCommandError';
  }
}

export function readOptions<Options extends readonly OptionDefinition[] | undefined>(source: OptionSource, definitions: Options): OptionValues<Options> {
  const values: Record<string, string | number | boolean> = {};
  for (const definition of definitions ?? []) {
    const option = source.get(definition.name);
    if (option?.value === undefined || option.value === null) {
      if (definition.required) throw new OutdatedCommandError(`option "${definition.name}" is missing`);
      continue;
    }
    const expected = JS_TYPE[definition.type as keyof ValueByType] as string | undefined;
    if (option.type !== definition.type || typeof option.value !== expected) throw new OutdatedCommandError(`option "${definition.name}" has another type`);
    values[definition.name] = option.value;
  }
  return values as OptionValues<Options>;
}

export function readSubcommand<Subcommands extends readonly SubcommandDefinition[]>(source: OptionSource, definitions: Subcommands): SubcommandValues<Subcommands> {
  const name = source.getSubcommand(false);
  const definition = definitions.find((candidate) => candidate.name === name);
  if (!definition) throw new OutdatedCommandError(name ? `subcommand "${name}" is unknown` : 'no subcommand was given');
  return { subcommand: definition.name, options: readOptions(source, definition.options) } as SubcommandValues<Subcommands>;
}
