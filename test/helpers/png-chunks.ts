/**
 * The PNG's chunks other than tEXt/iTXt/zTXt, concatenated as they appear in the file (signature included): what two
 * PNGs share when only their text chunks (the `parameters` infotext, which records the prompt as typed) differ.
 */
export function pngWithoutTextChunks(png: Buffer): Buffer {
  const kept: Buffer[] = [png.subarray(0, 8)];
  let offset = 8;
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const end = offset + 12 + length;
    if (!['tEXt', 'iTXt', 'zTXt'].includes(type)) kept.push(png.subarray(offset, end));
    offset = end;
  }
  return Buffer.concat(kept);
}
