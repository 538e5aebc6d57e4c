/**
 * Where a TAESD preview decoder's ONNX file sits in a folder (a Hub snapshot or one of the owner's), in the order
 * they are tried: diffusers' AutoencoderTiny layout as optimum exports it, madebyollin's file name, a bare model.
 * Shared by the decoder's loader (diffusion/taesd.ts) and `models pull --preview-decoder` (hub/pull.ts).
 */
export const TAESD_DECODER_FILES = ['vae_decoder/model.onnx', 'taesd_decoder.onnx', 'model.onnx'] as const;

/** Is this repository path part of a TAESD decoder: one of those files, its external weights, or its folder's config? */
export function isPreviewDecoderFile(path: string): boolean {
  if (/^vae_decoder\/[^/]+\.(onnx|onnx_data|pb|json)$/.test(path)) return true;
  return /^(taesd_decoder\.onnx|model\.onnx)(_data)?$/.test(path);
}
