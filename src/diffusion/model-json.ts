import { readTextIfPresent } from '../util/fs.js';
import { ModelFileError } from './errors.js';

/**
 * Reads and parses a JSON file of the model folder; a missing or unparsable file is a ModelFileError naming it
 * (`label`, relative to the model folder).
 */
export async function readModelJson<T>(path: string, label: string, parse: (text: string) => T = (text) => JSON.parse(text) as T): Promise<T> {
  const text = await readTextIfPresent(path);
  if (text === undefined) throw new ModelFileError(label, 'file is missing');
  try {
    return parse(text);
  } catch (error) {
    throw new ModelFileError(label, `is not valid JSON (${(error as Error).message})`);
  }
}
