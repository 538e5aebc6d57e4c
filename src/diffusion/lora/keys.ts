/**
 * Which module of the model each tensor of a LoRA file adapts, for the key layouts in use with SD 1.5:
 * - kohya / A1111 (sd-scripts' networks/lora.py, what Civitai LoRAs are): `lora_unet_<module path with _>.lora_down.weight`,
 *   `.lora_up.weight`, `.alpha`; text encoder `lora_te_text_model_<path>…`.
 * - diffusers / PEFT: `unet.<module path>.lora_A.weight` / `.lora_B.weight` (optionally under `base_model.model.`),
 *   `text_encoder.text_model.<path>.lora_A.weight`, and the older diffusers layouts `<path>.lora.down.weight`,
 *   `<path>.lora_linear_layer.down.weight` and attention processors (`attn1.processor.to_q_lora.down.weight`,
 *   where `to_out_lora` is `to_out.0`). An `.alpha` next to them is honoured; without it the scale is 1.
 * Module paths are compared in kohya's form (dots → underscores), so both layouts resolve through one index.
 */
import type { SafetensorsFile, SafetensorsTensor } from './safetensors.js';

export type LoraTarget = 'unet' | 'text_encoder';

/** One adapted module: weight += scale · multiplier · up · down, scale = alpha / rank (1 without alpha). */
export interface LoraModule {
  target: LoraTarget;
  /** The module path in kohya's form, without prefix (`down_blocks_0_attentions_0_…_to_q`, `encoder_layers_0_…`). */
  module: string;
  down: SafetensorsTensor;
  up: SafetensorsTensor;
  alpha: number | null;
}

export interface LoraWeights {
  modules: LoraModule[];
  /** Keys of the file that are not part of any LoRA module we understand (counted and reported, not used). */
  unrecognizedKeys: string[];
}

type Role = 'down' | 'up' | 'alpha';

interface KeyParse {
  target: LoraTarget;
  module: string;
  role: Role;
}

const KOHYA = /^lora_(unet|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const DIFFUSERS = /^(unet|text_encoder)\.(.+?)\.(lora_A\.weight|lora_B\.weight|lora\.down\.weight|lora\.up\.weight|lora_linear_layer\.down\.weight|lora_linear_layer\.up\.weight|alpha)$/;
const PROCESSOR = /^(unet|text_encoder)\.(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;

function roleOf(suffix: string): Role {
  if (suffix === 'alpha') return 'alpha';
  return /lora_A|down/.test(suffix) ? 'down' : 'up';
}

/** The kohya form of a dotted module path; the text encoder's `text_model.` prefix dropped (exports name nodes without it). */
export function kohyaModuleName(target: LoraTarget, dottedPath: string): string {
  const path = target === 'text_encoder' ? dottedPath.replace(/^text_model\./, '') : dottedPath;
  return path.replace(/\./g, '_');
}

function parseKey(key: string): KeyParse | null {
  const kohya = KOHYA.exec(key);
  if (kohya) {
    const target: LoraTarget = kohya[1] === 'unet' ? 'unet' : 'text_encoder';
    const module = target === 'text_encoder' ? kohya[2]!.replace(/^text_model_/, '') : kohya[2]!;
    return { target, module, role: roleOf(kohya[3]!) };
  }
  const name = key.replace(/^base_model\.model\./, '');
  const processor = PROCESSOR.exec(name);
  if (processor) {
    const target: LoraTarget = processor[1] === 'unet' ? 'unet' : 'text_encoder';
    const projection = processor[3] === 'to_out' ? 'to_out.0' : processor[3]!;
    return { target, module: kohyaModuleName(target, `${processor[2]}.${projection}`), role: roleOf(processor[4]!) };
  }
  const diffusers = DIFFUSERS.exec(name);
  if (diffusers) {
    const target: LoraTarget = diffusers[1] === 'unet' ? 'unet' : 'text_encoder';
    return { target, module: kohyaModuleName(target, diffusers[2]!), role: roleOf(diffusers[3]!) };
  }
  return null;
}

/** Groups a LoRA file's tensors into modules (down, up, alpha); what does not fit is listed in `unrecognizedKeys`. */
export function loraModules(file: SafetensorsFile): LoraWeights {
  const groups = new Map<string, { target: LoraTarget; module: string; down?: SafetensorsTensor; up?: SafetensorsTensor; alpha?: SafetensorsTensor; keys: string[] }>();
  const unrecognizedKeys: string[] = [];
  for (const [key, tensor] of file.tensors) {
    const parsed = parseKey(key);
    if (!parsed) {
      unrecognizedKeys.push(key);
      continue;
    }
    const id = `${parsed.target}/${parsed.module}`;
    let group = groups.get(id);
    if (!group) groups.set(id, (group = { target: parsed.target, module: parsed.module, keys: [] }));
    group[parsed.role] = tensor;
    group.keys.push(key);
  }
  const modules: LoraModule[] = [];
  for (const group of groups.values()) {
    if (!group.down || !group.up) {
      unrecognizedKeys.push(...group.keys);
      continue;
    }
    const alpha = group.alpha ? (group.alpha.values()[0] ?? null) : null;
    modules.push({ target: group.target, module: group.module, down: group.down, up: group.up, alpha });
  }
  return { modules, unrecognizedKeys };
}
