/** The text conditioning of the UNet: prompt and negative prompt through the CLIP text encoder in one call. */
import type { StableDiffusionModel } from './model.js';
import { firstOutput, readFloats, TensorFeeder } from './tensors.js';

export interface TextConditioning {
  /** Flat embeddings of [negative × n, prompt × n] (or prompt × n without guidance). */
  embeddings: Float32Array;
  /** Their dims: [rows, sequence length, width]. */
  dims: number[];
}

/** Text embeddings for [negative × n, prompt × n] (or prompt × n without guidance), flat, plus their dims. */
export async function encodeText(
  model: Pick<StableDiffusionModel, 'tokenizer' | 'textEncoder'>,
  prompt: string,
  negativePrompt: string,
  batch: number,
  withGuidance: boolean,
): Promise<TextConditioning> {
  const { tokenizer, textEncoder } = model;
  const rows = withGuidance ? [tokenizer.encode(negativePrompt), tokenizer.encode(prompt)] : [tokenizer.encode(prompt)];
  const ids = TensorFeeder.forInput(textEncoder.session, 'input_ids', [rows.length, tokenizer.maxLength]);
  const flatIds = new Int32Array(rows.length * tokenizer.maxLength);
  rows.forEach((row, r) => flatIds.set(row, r * tokenizer.maxLength));
  const outputs = await textEncoder.session.run({ input_ids: ids.setInts(flatIds) });
  const hidden = firstOutput(textEncoder.session, outputs);
  const [rowCount, sequence, width] = hidden.dims as [number, number, number];
  const perRow = sequence * width;
  const encoded = readFloats(hidden, new Float32Array(rowCount * perRow));
  // Repeat each row n times: [neg × n, prompt × n], the order diffusers concatenates for guidance.
  const embeddings = new Float32Array(rowCount * batch * perRow);
  for (let r = 0; r < rowCount; r++) {
    const row = encoded.subarray(r * perRow, (r + 1) * perRow);
    for (let i = 0; i < batch; i++) embeddings.set(row, (r * batch + i) * perRow);
  }
  return { embeddings, dims: [rowCount * batch, sequence, width] };
}
