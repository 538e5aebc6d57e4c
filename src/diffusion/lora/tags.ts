/**
 * A1111's extra-network tags in a prompt: `<lora:name>`, `<lora:name:0.8>`, `<lora:name:te:unet>`, `<lora:name:unet=0.5>`.
 * As A1111's modules/extra_networks.py `parse_prompt`: every `<kind:args>` matching `<(\w+):([^>]+)>` is removed from
 * the text before it is parsed for weights and tokenized, and its arguments are split at `:` (`key=value` ones are
 * named). A1111 reads tags from the prompt only (processing.py `parse_extra_network_prompts` parses `p.prompts`); a
 * tag in the negative prompt stays text there, and so it does here.
 *
 * LoRA arguments as A1111's extensions-builtin/Lora/extra_networks_lora.py reads them: positional 2 is the text-encoder
 * multiplier (default 1), positional 3 the UNet multiplier (default: the text-encoder one), `te=` / `unet=` override.
 * `lyco` is A1111's alias of `lora`. Other kinds (hypernet, …) are removed from the text and listed as ignored.
 */
import { InvalidRequestError } from '../errors.js';

export interface LoraTag {
  /** The name as written in the prompt (A1111's `mentioned_name`). */
  name: string;
  teMultiplier: number;
  unetMultiplier: number;
}

export interface ExtraNetworkPrompt {
  /** The prompt without its tags, as it is parsed and encoded. */
  text: string;
  loras: LoraTag[];
  /** Tags of kinds this engine does not run (e.g. `hypernet`), as written. */
  ignored: string[];
}

// Python's \w is Unicode-aware; JavaScript's is not.
const EXTRA_NETWORK = /<([\p{L}\p{N}_]+):([^>]+)>/gu;

function multiplier(text: string, tag: string): number {
  // Python's float(): surrounding whitespace allowed, the rest must be one number.
  const value = text.trim() === '' ? NaN : Number(text.trim());
  if (!Number.isFinite(value)) throw new InvalidRequestError(`${tag}: "${text}" is not a number (write <lora:name:0.8>).`);
  return value;
}

export function extractExtraNetworks(prompt: string): ExtraNetworkPrompt {
  const loras: LoraTag[] = [];
  const ignored: string[] = [];
  const text = prompt.replace(EXTRA_NETWORK, (tag: string, kind: string, args: string) => {
    if (kind !== 'lora' && kind !== 'lyco') {
      ignored.push(tag);
      return '';
    }
    const positional: string[] = [];
    const named = new Map<string, string>();
    for (const item of args.split(':')) {
      // A1111's ExtraNetworkParams: item.split('=', 2) giving exactly two parts is a named argument.
      const parts = item.split('=');
      if (parts.length === 2) named.set(parts[0]!, parts[1]!);
      else positional.push(item);
    }
    const name = positional[0];
    if (name === undefined || name === '') throw new InvalidRequestError(`${tag}: the LoRA has no name (write <lora:name:0.8>).`);
    let teMultiplier = positional.length > 1 ? multiplier(positional[1]!, tag) : 1;
    if (named.has('te')) teMultiplier = multiplier(named.get('te')!, tag);
    let unetMultiplier = positional.length > 2 ? multiplier(positional[2]!, tag) : teMultiplier;
    if (named.has('unet')) unetMultiplier = multiplier(named.get('unet')!, tag);
    loras.push({ name, teMultiplier, unetMultiplier });
    return '';
  });
  return { text, loras, ignored };
}
