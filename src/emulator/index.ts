// The local Discord emulator: public entry point for tests, the sandbox CLI and anyone driving it in-process.
export { DiscordEmulator, startDiscordEmulator } from './emulator.js';
export type { BotController, ControlRouteHandler, EmulatorOptions, FaultRequest, RequestLogEntry } from './emulator.js';
export { BotSupervisor } from './supervisor.js';
export type { BotProcessOptions, ExitInfo } from './supervisor.js';
export { SandboxClient, SandboxClientError } from './client.js';
export type { SandboxInteraction, SandboxMessage, SandboxAttachment, SandboxState } from './client.js';
export { DEFAULT_SEED, SeedSchema, loadSeedFile, seedWithShards } from './state.js';
export { shardOf } from './sharding.js';
export type { SeedConfig } from './state.js';
export type { InvokeRequest } from './commands.js';
export type { ClickRequest } from './interactions.js';
export { DEFAULT_RATE_LIMITS } from './ratelimit.js';
export type { RateLimitRule } from './ratelimit.js';
