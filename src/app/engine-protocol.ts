/**
 * The messages between the bot (engine-process.ts) and the engine's child process (engine-child.ts), over Node's IPC
 * channel with `serialization: 'advanced'` (the V8 serializer): typed arrays and Buffers cross as binary, written
 * once into the message by the sender and read by the receiver as a view into the received message (Node copies a
 * Float32Array once more only when its offset in the message is not 4-byte aligned). No JSON, no base64, and no copy
 * of our own on either side. Seeds cross as decimal strings, errors as plain objects.
 */
import { CancelledError, ImagineError } from '../errors.js';
import type { GenerationRequest } from '../queue/index.js';
import type { EngineInfo, EngineSetup } from './engine.js';

/** A GenerationRequest with its bigint seed as a decimal string. */
export type WireRequest = Omit<GenerationRequest, 'seed'> & { seed: string };

export interface WireError {
  name: string;
  message: string;
  /** Set for the ImagineError family: the user-facing code. */
  code?: string;
  stack?: string;
}

/** Test-only faults (honoured only when the child runs with IMAGINE_ENGINE_DEBUG_FAULTS=1): at the next step, the
 * child aborts (a native crash) or blocks its thread for good (a session.run that never returns). */
export type EngineFault = 'abort' | 'hang';

export type ParentMessage =
  | { type: 'start'; setup: EngineSetup }
  | { type: 'generate'; callId: number; jobId?: string; request: WireRequest }
  | { type: 'cancel'; callId: number }
  | { type: 'stop' }
  | { type: 'fault'; fault: EngineFault };

export type ChildMessage =
  /** One pino JSON line of the child's logger; the parent logs it again under module 'engine'. */
  | { type: 'log'; line: string }
  | { type: 'ready'; info: EngineInfo }
  | { type: 'startFailed'; error: WireError }
  | {
      type: 'progress';
      callId: number;
      step: number;
      totalSteps: number;
      latents?: { data: Float32Array; shape: [number, number, number, number] };
      loadingLoras?: string[];
    }
  | { type: 'done'; callId: number; images: Array<{ png: Uint8Array; seed: string; nsfw?: boolean }>; model?: string; promptTokens?: string }
  | { type: 'failed'; callId: number; error: WireError };

export function toWireError(error: unknown): WireError {
  if (error instanceof ImagineError) return { name: error.name, message: error.message, code: error.code, ...(error.stack ? { stack: error.stack } : {}) };
  if (error instanceof Error) return { name: error.name, message: error.message, ...(error.stack ? { stack: error.stack } : {}) };
  return { name: 'Error', message: String(error) };
}

/** The error again on this side: the ImagineError family keeps its code and user-facing message. */
export function fromWireError(wire: WireError): Error {
  let error: Error;
  if (wire.code === 'cancelled') error = new CancelledError(wire.message);
  else if (wire.code !== undefined) error = new ImagineError(wire.code, wire.message);
  else error = new Error(wire.message);
  error.name = wire.name;
  if (wire.stack) error.stack = wire.stack;
  return error;
}
