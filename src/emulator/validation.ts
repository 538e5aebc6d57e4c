import { ApplicationCommandOptionType, MessageFlags } from 'discord-api-types/v10';
import { FormErrors } from './errors.js';

/**
 * Hand-written validators for the request bodies the emulator accepts, following discord-api-types' shapes and the
 * limits Discord documents. Failures produce Discord's 400/50035 "Invalid Form Body" with its nested error tree.
 * Like Discord, unknown fields are ignored; known fields of the wrong type or out of bounds are rejected.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

// Constants come from discord-api-types, so the emulator and discord.js agree on every number.
export const MESSAGE_FLAG = {
  SuppressEmbeds: MessageFlags.SuppressEmbeds,
  Ephemeral: MessageFlags.Ephemeral,
  Loading: MessageFlags.Loading,
  SuppressNotifications: MessageFlags.SuppressNotifications,
  IsVoiceMessage: MessageFlags.IsVoiceMessage,
  IsComponentsV2: MessageFlags.IsComponentsV2,
} as const;
/** Flags a bot may set when sending or editing a message (others are set by Discord itself). */
const SETTABLE_MESSAGE_FLAGS =
  MESSAGE_FLAG.SuppressEmbeds | MESSAGE_FLAG.Ephemeral | MESSAGE_FLAG.SuppressNotifications | MESSAGE_FLAG.IsVoiceMessage | MESSAGE_FLAG.IsComponentsV2;

export const LIMITS = {
  content: 2000,
  embeds: 10,
  embedTotal: 6000,
  embedTitle: 256,
  embedDescription: 4096,
  embedFields: 25,
  embedFieldName: 256,
  embedFieldValue: 1024,
  embedFooter: 2048,
  embedAuthor: 256,
  actionRows: 5,
  rowButtons: 5,
  customId: 100,
  buttonLabel: 80,
  selectOptions: 25,
  attachments: 10,
} as const;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const lengthMessage = (max: number) => `Must be ${max} or fewer in length.`;
const between = (min: number, max: number) => `Must be between ${min} and ${max} in length.`;

function checkString(errors: FormErrors, path: (string | number)[], value: unknown, opts: { min?: number; max: number; required?: boolean; nullable?: boolean }): value is string {
  if (value === undefined) {
    if (opts.required) errors.add(path, 'BASE_TYPE_REQUIRED', 'This field is required');
    return false;
  }
  if (value === null) {
    if (!opts.nullable) errors.add(path, 'BASE_TYPE_REQUIRED', 'This field is required');
    return false;
  }
  if (typeof value !== 'string') {
    errors.add(path, 'BASE_TYPE_STRING', `Could not interpret "${JSON.stringify(value)}" as string.`);
    return false;
  }
  const length = [...value].length;
  if (opts.min !== undefined && (length < opts.min || length > opts.max)) {
    errors.add(path, 'BASE_TYPE_BAD_LENGTH', between(opts.min, opts.max));
    return false;
  }
  if (length > opts.max) {
    errors.add(path, 'BASE_TYPE_MAX_LENGTH', lengthMessage(opts.max));
    return false;
  }
  return true;
}

function checkInteger(errors: FormErrors, path: (string | number)[], value: unknown, min: number, max: number): value is number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    errors.add(path, 'NUMBER_TYPE_COERCE', `Value "${JSON.stringify(value)}" is not int.`);
    return false;
  }
  if (value < min || value > max) {
    errors.add(path, value < min ? 'NUMBER_TYPE_MIN' : 'NUMBER_TYPE_MAX', value < min ? `int value should be greater than or equal to ${min}.` : `int value should be less than or equal to ${max}.`);
    return false;
  }
  return true;
}

function checkBoolean(errors: FormErrors, path: (string | number)[], value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') errors.add(path, 'BASE_TYPE_BOOLEAN', 'Must be either true or false.');
}

function checkArray(errors: FormErrors, path: (string | number)[], value: unknown, max: number): value is Json[] {
  if (!Array.isArray(value)) {
    errors.add(path, 'BASE_TYPE_LIST', 'Must be an array.');
    return false;
  }
  if (value.length > max) {
    errors.add(path, 'BASE_TYPE_MAX_LENGTH', lengthMessage(max));
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Messages

export interface MessageBodyContext {
  /** Interaction responses and follow-ups may set EPHEMERAL; channel messages may not (Discord ignores it there). */
  allowEphemeral: boolean;
  /** PATCH bodies: nothing is required. */
  isEdit: boolean;
  /** Files uploaded with the request (multipart), used for the emptiness check. */
  uploadedFileCount: number;
}

/** Validates a message body (create, edit, webhook execute, interaction callback data). Throws 50035 when invalid. */
export function validateMessageBody(body: JsonObject, context: MessageBodyContext, errors = new FormErrors(), prefix: (string | number)[] = []): FormErrors {
  const at = (...rest: (string | number)[]) => [...prefix, ...rest];
  if (body.content !== undefined && body.content !== null) checkString(errors, at('content'), body.content, { max: LIMITS.content });
  checkBoolean(errors, at('tts'), body.tts);
  if (body.flags !== undefined && body.flags !== null) {
    if (checkInteger(errors, at('flags'), body.flags, 0, 2 ** 31)) {
      if (((body.flags as number) & ~SETTABLE_MESSAGE_FLAGS) !== 0) errors.add(at('flags'), 'MESSAGE_FLAGS_INVALID', 'Invalid message flags');
    }
  }
  if (body.embeds !== undefined && body.embeds !== null && checkArray(errors, at('embeds'), body.embeds, LIMITS.embeds)) {
    let total = 0;
    (body.embeds as Json[]).forEach((embed, index) => {
      total += validateEmbed(errors, at('embeds', index), embed);
    });
    if (total > LIMITS.embedTotal) errors.add(at('embeds'), 'MAX_EMBED_SIZE_EXCEEDED', 'Embed size exceeds maximum size of 6000');
  }
  if (body.components !== undefined && body.components !== null) {
    const v2 = typeof body.flags === 'number' && (body.flags & MESSAGE_FLAG.IsComponentsV2) !== 0;
    validateComponents(errors, at('components'), body.components, v2);
  }
  if (body.attachments !== undefined && body.attachments !== null && checkArray(errors, at('attachments'), body.attachments, LIMITS.attachments)) {
    (body.attachments as Json[]).forEach((attachment, index) => {
      if (!isObject(attachment)) return errors.add(at('attachments', index), 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
      const id = attachment.id;
      if (typeof id !== 'string' && typeof id !== 'number') errors.add(at('attachments', index, 'id'), 'BASE_TYPE_REQUIRED', 'This field is required');
      if (attachment.description !== undefined && attachment.description !== null) checkString(errors, at('attachments', index, 'description'), attachment.description, { max: 1024 });
      if (attachment.filename !== undefined && attachment.filename !== null) checkString(errors, at('attachments', index, 'filename'), attachment.filename, { min: 1, max: 1024 });
    });
  }
  if (body.allowed_mentions !== undefined && body.allowed_mentions !== null && !isObject(body.allowed_mentions)) {
    errors.add(at('allowed_mentions'), 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
  }
  return errors;
}

/** Discord's "Cannot send an empty message" test for creates. */
export function isEmptyMessage(body: JsonObject, uploadedFileCount: number): boolean {
  const hasContent = typeof body.content === 'string' && body.content.length > 0;
  const hasEmbeds = Array.isArray(body.embeds) && body.embeds.length > 0;
  const hasComponents = Array.isArray(body.components) && body.components.length > 0;
  const hasStickers = Array.isArray(body.sticker_ids) && body.sticker_ids.length > 0;
  const hasPoll = isObject(body.poll);
  return !hasContent && !hasEmbeds && !hasComponents && !hasStickers && !hasPoll && uploadedFileCount === 0;
}

function validateEmbed(errors: FormErrors, path: (string | number)[], embed: Json): number {
  if (!isObject(embed)) {
    errors.add(path, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    return 0;
  }
  let size = 0;
  const text = (key: string, max: number, value: unknown = embed[key], p = [...path, key]) => {
    if (value === undefined || value === null) return;
    if (checkString(errors, p, value, { max })) size += [...(value as string)].length;
  };
  text('title', LIMITS.embedTitle);
  text('description', LIMITS.embedDescription);
  if (embed.url !== undefined && embed.url !== null) checkString(errors, [...path, 'url'], embed.url, { max: 2048 });
  if (embed.color !== undefined && embed.color !== null) checkInteger(errors, [...path, 'color'], embed.color, 0, 0xffffff);
  if (isObject(embed.footer)) text('text', LIMITS.embedFooter, embed.footer.text, [...path, 'footer', 'text']);
  if (isObject(embed.author)) text('name', LIMITS.embedAuthor, embed.author.name, [...path, 'author', 'name']);
  for (const media of ['image', 'thumbnail'] as const) {
    const value = embed[media];
    if (value === undefined || value === null) continue;
    if (!isObject(value)) errors.add([...path, media], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    else checkString(errors, [...path, media, 'url'], value.url, { max: 2048, required: true });
  }
  if (embed.fields !== undefined && embed.fields !== null && checkArray(errors, [...path, 'fields'], embed.fields, LIMITS.embedFields)) {
    (embed.fields as Json[]).forEach((field, index) => {
      if (!isObject(field)) return errors.add([...path, 'fields', index], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
      if (checkString(errors, [...path, 'fields', index, 'name'], field.name, { min: 1, max: LIMITS.embedFieldName, required: true })) size += [...(field.name as string)].length;
      if (checkString(errors, [...path, 'fields', index, 'value'], field.value, { min: 1, max: LIMITS.embedFieldValue, required: true })) size += [...(field.value as string)].length;
      checkBoolean(errors, [...path, 'fields', index, 'inline'], field.inline);
    });
  }
  return size;
}

const SELECT_TYPES = new Set([3, 5, 6, 7, 8]);

/** Classic action rows (≤ 5 rows, ≤ 5 buttons or one select each), or Components V2 trees when the flag is set. */
export function validateComponents(errors: FormErrors, path: (string | number)[], components: Json, v2: boolean): void {
  if (!checkArray(errors, path, components, v2 ? 40 : LIMITS.actionRows)) return;
  const seenIds = new Set<string>();
  (components as Json[]).forEach((component, index) => {
    if (!isObject(component)) return errors.add([...path, index], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    if (!v2 && component.type !== 1) {
      return errors.add([...path, index, 'type'], 'UNION_TYPE_CHOICES', 'Value of field "type" must be one of (1,).');
    }
    validateComponentTree(errors, [...path, index], component, seenIds, v2);
  });
}

function validateComponentTree(errors: FormErrors, path: (string | number)[], component: JsonObject, seenIds: Set<string>, v2: boolean): void {
  const type = component.type;
  if (type === 1) {
    if (!checkArray(errors, [...path, 'components'], component.components, LIMITS.rowButtons)) return;
    const children = component.components as Json[];
    if (children.length === 0) errors.add([...path, 'components'], 'BASE_TYPE_BAD_LENGTH', between(1, 5));
    const hasSelect = children.some((c) => isObject(c) && typeof c.type === 'number' && SELECT_TYPES.has(c.type));
    if (hasSelect && children.length > 1) errors.add([...path, 'components'], 'COMPONENT_LAYOUT_WIDTH_EXCEEDED', 'The specified component exceeds the maximum width');
    children.forEach((child, index) => {
      if (!isObject(child)) return errors.add([...path, 'components', index], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
      if (child.type === 1) return errors.add([...path, 'components', index, 'type'], 'COMPONENT_TYPE_INVALID', 'Action rows cannot contain action rows');
      validateComponentTree(errors, [...path, 'components', index], child, seenIds, v2);
    });
    return;
  }
  if (type === 2) return validateButton(errors, path, component, seenIds);
  if (typeof type === 'number' && SELECT_TYPES.has(type)) {
    checkCustomId(errors, path, component.custom_id, seenIds);
    if (component.placeholder !== undefined && component.placeholder !== null) checkString(errors, [...path, 'placeholder'], component.placeholder, { max: 150 });
    if (component.min_values !== undefined) checkInteger(errors, [...path, 'min_values'], component.min_values, 0, 25);
    if (component.max_values !== undefined) checkInteger(errors, [...path, 'max_values'], component.max_values, 1, 25);
    if (type === 3 && checkArray(errors, [...path, 'options'], component.options, LIMITS.selectOptions)) {
      (component.options as Json[]).forEach((option, index) => {
        if (!isObject(option)) return errors.add([...path, 'options', index], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
        checkString(errors, [...path, 'options', index, 'label'], option.label, { min: 1, max: 100, required: true });
        checkString(errors, [...path, 'options', index, 'value'], option.value, { min: 1, max: 100, required: true });
      });
    }
    return;
  }
  if (!v2) return errors.add([...path, 'type'], 'COMPONENT_TYPE_INVALID', 'Invalid component type');
  // Components V2 containers: walk their children and accessories for buttons/selects.
  for (const key of ['components', 'items'] as const) {
    const children = component[key];
    if (Array.isArray(children)) children.forEach((child, index) => isObject(child) && validateComponentTree(errors, [...path, key, index], child, seenIds, v2));
  }
  if (isObject(component.accessory)) validateComponentTree(errors, [...path, 'accessory'], component.accessory, seenIds, v2);
}

function validateButton(errors: FormErrors, path: (string | number)[], button: JsonObject, seenIds: Set<string>): void {
  const style = button.style;
  if (!checkInteger(errors, [...path, 'style'], style, 1, 6)) return;
  if (button.label !== undefined && button.label !== null) checkString(errors, [...path, 'label'], button.label, { max: LIMITS.buttonLabel });
  checkBoolean(errors, [...path, 'disabled'], button.disabled);
  if (style === 5) {
    checkString(errors, [...path, 'url'], button.url, { max: 512, required: true });
    if (button.custom_id !== undefined) errors.add([...path, 'custom_id'], 'BUTTON_COMPONENT_CUSTOM_ID_INVALID', 'A custom id cannot be specified for a link button');
  } else if (style === 6) {
    checkString(errors, [...path, 'sku_id'], button.sku_id, { max: 20, required: true });
  } else {
    checkCustomId(errors, path, button.custom_id, seenIds);
    if (button.url !== undefined) errors.add([...path, 'url'], 'BUTTON_COMPONENT_URL_INVALID', 'A url can only be specified for a link button');
    const hasLabel = typeof button.label === 'string' && button.label.length > 0;
    if (!hasLabel && !isObject(button.emoji)) errors.add([...path, 'label'], 'BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED', 'A label or emoji is required');
  }
}

function checkCustomId(errors: FormErrors, path: (string | number)[], customId: unknown, seenIds: Set<string>): void {
  if (!checkString(errors, [...path, 'custom_id'], customId, { min: 1, max: LIMITS.customId, required: true })) return;
  if (seenIds.has(customId as string)) errors.add([...path, 'custom_id'], 'COMPONENT_CUSTOM_ID_DUPLICATED', 'Component custom id cannot be duplicated');
  seenIds.add(customId as string);
}

// ---------------------------------------------------------------------------------------------------------------
// Application commands

const CHAT_INPUT_NAME = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;
export const OPTION_TYPE = {
  Subcommand: ApplicationCommandOptionType.Subcommand,
  SubcommandGroup: ApplicationCommandOptionType.SubcommandGroup,
  String: ApplicationCommandOptionType.String,
  Integer: ApplicationCommandOptionType.Integer,
  Boolean: ApplicationCommandOptionType.Boolean,
  User: ApplicationCommandOptionType.User,
  Channel: ApplicationCommandOptionType.Channel,
  Role: ApplicationCommandOptionType.Role,
  Mentionable: ApplicationCommandOptionType.Mentionable,
  Number: ApplicationCommandOptionType.Number,
  Attachment: ApplicationCommandOptionType.Attachment,
} as const;

function validName(name: string): boolean {
  return CHAT_INPUT_NAME.test(name) && name === name.toLowerCase();
}

/** Validates one command create/edit body (type 1 chat input, 2 user, 3 message, 4 entry point). */
export function validateCommandBody(errors: FormErrors, path: (string | number)[], body: Json, isPatch = false): void {
  if (!isObject(body)) return errors.add(path, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
  const type = body.type ?? 1;
  if (!checkInteger(errors, [...path, 'type'], type, 1, 4)) return;
  if (!isPatch || body.name !== undefined) {
    if (checkString(errors, [...path, 'name'], body.name, { min: 1, max: 32, required: true })) {
      if (type === 1 && !validName(body.name as string)) errors.add([...path, 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
    }
  }
  if (type === 1) {
    if (!isPatch || body.description !== undefined) checkString(errors, [...path, 'description'], body.description, { min: 1, max: 100, required: true });
  } else if (body.description !== undefined && body.description !== '' && body.description !== null) {
    errors.add([...path, 'description'], 'APPLICATION_COMMAND_DESCRIPTION_INVALID', 'Context menu commands cannot have description');
  }
  if (body.default_member_permissions !== undefined && body.default_member_permissions !== null) {
    if (typeof body.default_member_permissions !== 'string' || !/^\d+$/.test(body.default_member_permissions)) {
      errors.add([...path, 'default_member_permissions'], 'BASE_TYPE_STRING', 'Must be a permission bitfield string.');
    }
  }
  checkBoolean(errors, [...path, 'dm_permission'], body.dm_permission);
  checkBoolean(errors, [...path, 'nsfw'], body.nsfw);
  for (const key of ['contexts', 'integration_types'] as const) {
    const value = body[key];
    if (value === undefined || value === null) continue;
    if (checkArray(errors, [...path, key], value, 3)) {
      (value as Json[]).forEach((v, i) => checkInteger(errors, [...path, key, i], v, 0, key === 'contexts' ? 2 : 1));
    }
  }
  if (body.options !== undefined && body.options !== null) {
    if (type !== 1) errors.add([...path, 'options'], 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID', 'Context menu commands cannot have options');
    else validateOptions(errors, [...path, 'options'], body.options, 0);
  }
}

function validateOptions(errors: FormErrors, path: (string | number)[], options: Json, depth: number): void {
  if (!checkArray(errors, path, options, 25)) return;
  const list = options as Json[];
  const names = new Set<string>();
  let sawOptional = false;
  const kinds = new Set<'sub' | 'value'>();
  list.forEach((option, index) => {
    const at = [...path, index];
    if (!isObject(option)) return errors.add(at, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    if (!checkInteger(errors, [...at, 'type'], option.type, 1, 11)) return;
    const type = option.type as number;
    if (checkString(errors, [...at, 'name'], option.name, { min: 1, max: 32, required: true })) {
      if (!validName(option.name as string)) errors.add([...at, 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
      if (names.has(option.name as string)) errors.add([...at, 'name'], 'APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS', 'Option name already exists');
      names.add(option.name as string);
    }
    checkString(errors, [...at, 'description'], option.description, { min: 1, max: 100, required: true });
    const isSub = type === OPTION_TYPE.Subcommand || type === OPTION_TYPE.SubcommandGroup;
    kinds.add(isSub ? 'sub' : 'value');
    if (isSub) {
      if (option.required !== undefined && option.required !== false) errors.add([...at, 'required'], 'APPLICATION_COMMAND_OPTION_REQUIRED_INVALID', 'Subcommands cannot be required');
      if (type === OPTION_TYPE.SubcommandGroup && depth > 0) errors.add([...at, 'type'], 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID', 'Subcommand groups cannot be nested');
      if (type === OPTION_TYPE.Subcommand && depth > 1) errors.add([...at, 'type'], 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID', 'Too deep');
      if (option.options !== undefined && option.options !== null) validateOptions(errors, [...at, 'options'], option.options, depth + 1);
      return;
    }
    checkBoolean(errors, [...at, 'required'], option.required);
    if (option.required === true) {
      if (sawOptional) errors.add([...at, 'required'], 'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID', 'Required options must be placed before non-required options');
    } else {
      sawOptional = true;
    }
    checkBoolean(errors, [...at, 'autocomplete'], option.autocomplete);
    const choices = option.choices;
    if (choices !== undefined && choices !== null) {
      if (![OPTION_TYPE.String, OPTION_TYPE.Integer, OPTION_TYPE.Number].includes(type as 3 | 4 | 10)) {
        errors.add([...at, 'choices'], 'APPLICATION_COMMAND_OPTION_CHOICES_INVALID', 'Choices are only allowed for string, integer and number options');
      } else if (checkArray(errors, [...at, 'choices'], choices, 25)) {
        if (option.autocomplete === true && (choices as Json[]).length > 0) errors.add([...at, 'autocomplete'], 'APPLICATION_COMMAND_AUTOCOMPLETE_INVALID', 'Autocomplete cannot be enabled on options with choices');
        (choices as Json[]).forEach((choice, ci) => {
          if (!isObject(choice)) return errors.add([...at, 'choices', ci], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
          checkString(errors, [...at, 'choices', ci, 'name'], choice.name, { min: 1, max: 100, required: true });
          if (type === OPTION_TYPE.String) checkString(errors, [...at, 'choices', ci, 'value'], choice.value, { min: 1, max: 100, required: true });
          else if (typeof choice.value !== 'number' || (type === OPTION_TYPE.Integer && !Number.isInteger(choice.value))) {
            errors.add([...at, 'choices', ci, 'value'], 'NUMBER_TYPE_COERCE', `Value "${JSON.stringify(choice.value)}" is not ${type === OPTION_TYPE.Integer ? 'int' : 'a valid number'}.`);
          }
        });
      }
    }
    for (const key of ['min_value', 'max_value'] as const) {
      const value = option[key];
      if (value === undefined || value === null) continue;
      if (type !== OPTION_TYPE.Integer && type !== OPTION_TYPE.Number) errors.add([...at, key], 'APPLICATION_COMMAND_OPTION_TYPE_INVALID', `${key} is only valid for integer and number options`);
      else if (typeof value !== 'number' || (type === OPTION_TYPE.Integer && !Number.isInteger(value))) errors.add([...at, key], 'NUMBER_TYPE_COERCE', `Value "${JSON.stringify(value)}" is not a valid number.`);
    }
    if (typeof option.min_value === 'number' && typeof option.max_value === 'number' && option.min_value > option.max_value) {
      errors.add([...at, 'min_value'], 'APPLICATION_COMMAND_OPTION_RANGE_INVALID', 'min_value must be less than or equal to max_value');
    }
    for (const key of ['min_length', 'max_length'] as const) {
      const value = option[key];
      if (value === undefined || value === null) continue;
      if (type !== OPTION_TYPE.String) errors.add([...at, key], 'APPLICATION_COMMAND_OPTION_TYPE_INVALID', `${key} is only valid for string options`);
      else checkInteger(errors, [...at, key], value, key === 'min_length' ? 0 : 1, 6000);
    }
  });
  if (kinds.size > 1) errors.add(path, 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID', 'Subcommands and subcommand groups cannot be mixed with other option types');
}
