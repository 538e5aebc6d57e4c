import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';
import { DiscordHttpError, entityTooLarge, invalidJson } from './errors.js';
import { isObject, type JsonObject } from './validation.js';

/** A file part of a multipart request (discord.js sends `files[n]`; `n` links it to `attachments[].id`). */
export interface UploadedFile {
  /** The `n` of `files[n]`, or the part's position for other field names. */
  index: string;
  fieldName: string;
  filename: string;
  contentType: string;
  data: Buffer;
}

export interface ParsedBody {
  json: JsonObject | null;
  files: UploadedFile[];
  multipart: boolean;
}

export interface BodyLimits {
  /** Largest accepted file (Discord: the interaction's attachment_size_limit, 10 MiB for unboosted guilds). */
  maxFileBytes: number;
  /** Largest JSON body. */
  maxJsonBytes: number;
}

/** Reads a JSON or multipart/form-data body the way Discord accepts them. */
export async function readRequestBody(req: IncomingMessage, limits: BodyLimits): Promise<ParsedBody> {
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('multipart/form-data')) return readMultipart(req, limits);
  const raw = await readAll(req, limits.maxJsonBytes);
  if (raw.length === 0) return { json: null, files: [], multipart: false };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw invalidJson();
  }
  if (!isObject(parsed) && !Array.isArray(parsed)) throw invalidJson();
  // Bulk command overwrite sends a JSON array; it is wrapped so callers see one shape.
  return { json: Array.isArray(parsed) ? { __array: parsed } : parsed, files: [], multipart: false };
}

async function readAll(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let tooLarge = false;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) tooLarge = true; // keep draining so the client sees our answer rather than a reset
    else chunks.push(chunk);
  }
  if (tooLarge) throw entityTooLarge();
  return Buffer.concat(chunks);
}

function readMultipart(req: IncomingMessage, limits: BodyLimits): Promise<ParsedBody> {
  return new Promise((resolve, reject) => {
    let parser;
    try {
      parser = busboy({ headers: req.headers, limits: { fileSize: limits.maxFileBytes, fieldSize: limits.maxJsonBytes, files: 100 } });
    } catch {
      reject(new DiscordHttpError(400, 50035, 'Invalid Form Body'));
      return;
    }
    const files: UploadedFile[] = [];
    const pending: Promise<void>[] = [];
    let payloadJson: string | null = null;
    const plainFields: Record<string, string> = {};
    let tooLarge = false;
    let position = 0;
    parser.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      const match = /^files?\[(\d+)\]$/.exec(name);
      const index = match?.[1] ?? String(position);
      position += 1;
      pending.push(
        new Promise<void>((done) => {
          stream.on('data', (chunk: Buffer) => chunks.push(chunk));
          stream.on('limit', () => {
            tooLarge = true;
          });
          stream.on('end', () => {
            files.push({ index, fieldName: name, filename: info.filename ?? `file${index}`, contentType: info.mimeType, data: Buffer.concat(chunks) });
            done();
          });
        }),
      );
    });
    parser.on('field', (name, value) => {
      if (name === 'payload_json') payloadJson = value;
      else plainFields[name] = value;
    });
    parser.on('error', () => reject(new DiscordHttpError(400, 50035, 'Invalid Form Body')));
    parser.on('close', () => {
      void Promise.all(pending).then(() => {
        if (tooLarge) return reject(entityTooLarge());
        let json: JsonObject = {};
        if (payloadJson !== null) {
          try {
            const parsed: unknown = JSON.parse(payloadJson);
            if (!isObject(parsed)) return reject(invalidJson());
            json = parsed;
          } catch {
            return reject(invalidJson());
          }
        } else {
          // Discord also accepts the message fields as plain form fields when there is no payload_json.
          for (const [key, value] of Object.entries(plainFields)) json[key] = value;
        }
        files.sort((a, b) => Number(a.index) - Number(b.index));
        resolve({ json, files, multipart: true });
      });
    });
    req.pipe(parser);
  });
}
