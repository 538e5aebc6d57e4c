/** A1111's sampler names (what its "PNG info" and ComfyUI's readers expect), with " Karras" when in effect. */
export function samplerDisplayName(base: string, karras: boolean): string {
  return karras ? `${base} Karras` : base;
}
