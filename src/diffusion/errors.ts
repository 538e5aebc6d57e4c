// The ImagineError family lives in the shared root (src/errors.ts); this re-export keeps the engine's imports working.
export * from '../errors.js';
