export { addnetHash, parseSafetensors, readSafetensors, SafetensorsError, type SafetensorsFile, type SafetensorsTensor } from './safetensors.js';
export { loraModules, kohyaModuleName, type LoraModule, type LoraTarget, type LoraWeights } from './keys.js';
export { LoraMergeError, mergeLoras, readModelInitializer, type LoraMergeResult, type LoraToMerge } from './merge.js';
