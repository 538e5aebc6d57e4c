/**
 * A typed client for the control API (`/_sandbox`), for tests that drive a sandbox over HTTP (for example one
 * started by `imagine-bot sandbox` in another process). In-process tests can call the same operations on
 * `DiscordEmulator` directly.
 */

export interface SandboxAttachment {
  id: string;
  filename: string;
  content_type: string;
  size: number;
  width: number | null;
  height: number | null;
  url: string;
}

export interface SandboxMessage {
  id: string;
  channel_id: string;
  author_id: string;
  content: string;
  embeds: Record<string, unknown>[];
  components: Record<string, unknown>[];
  attachments: SandboxAttachment[];
  flags: number;
  ephemeral: boolean;
  loading: boolean;
  interaction_id: string | null;
  edit_count: number;
  created_at: string;
  edited_at: string | null;
  history: { at: string; content: string; attachments: string[]; flags: number }[];
}

export interface SandboxInteraction {
  id: string;
  type: number;
  user_id: string;
  guild_id: string;
  channel_id: string;
  name: string | null;
  custom_id: string | null;
  created_at: string;
  delivered: boolean;
  acked: boolean;
  ack_type: number | null;
  ack_ms: number | null;
  failed: boolean;
  token_expired: boolean;
  ephemeral: boolean;
  modal: Record<string, unknown> | null;
  /** Autocomplete answers (callback type 8). */
  choices: { name: string; value: string | number }[] | null;
  original: SandboxMessage | null;
  followups: SandboxMessage[];
}

export interface SandboxState {
  application_id: string;
  bot_user: { id: string; username: string };
  guilds: {
    id: string;
    name: string;
    owner_id: string;
    channels: { id: string; name: string; nsfw: boolean }[];
    roles: { id: string; name: string; permissions: string; managed: boolean }[];
    members: { user_id: string; role_ids: string[]; admin: boolean; permissions: string }[];
  }[];
  users: { id: string; username: string; global_name: string | null; admin: boolean; admin_guild_ids: string[] }[];
  bot_connected: boolean;
  /** The bot's shards (its running shard count, or the recommended one before it connects). */
  shards: { id: number; connected: boolean; guild_ids: string[] }[];
  clock_offset_seconds: number;
}

export class SandboxClientError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'SandboxClientError';
  }
}

export class SandboxClient {
  /** @param baseUrl the emulator's root, e.g. `http://127.0.0.1:8787` */
  constructor(readonly baseUrl: string) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}/_sandbox${path}`, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = (await response.json()) as unknown;
    if (!response.ok) {
      const reason = typeof data === 'object' && data !== null && 'error' in data ? String((data as { error: unknown }).error) : response.statusText;
      throw new SandboxClientError(response.status, reason);
    }
    return data as T;
  }

  state(): Promise<SandboxState> {
    return this.call('GET', '/state');
  }
  commands(): Promise<Record<string, unknown>[]> {
    return this.call('GET', '/commands');
  }
  invoke(request: { user_id: string; guild_id: string; channel_id: string; name: string; options?: Record<string, unknown>; subcommand?: string; bypass_permissions?: boolean }): Promise<{ interaction_id: string; delivered: boolean }> {
    return this.call('POST', '/commands', request);
  }
  click(request: { user_id: string; message_id: string; custom_id: string; values?: string[] }): Promise<{ interaction_id: string; delivered: boolean }> {
    return this.call('POST', '/clicks', request);
  }
  interaction(id: string): Promise<SandboxInteraction> {
    return this.call('GET', `/interactions/${id}`);
  }
  messages(channelId: string): Promise<SandboxMessage[]> {
    return this.call('GET', `/channels/${channelId}/messages`);
  }
  log(): Promise<{ at: string; method: string; route: string; path: string; status: number; code?: number }[]> {
    return this.call('GET', '/log');
  }
  fault(fault: Record<string, unknown> & { kind: string }): Promise<Record<string, unknown>> {
    return this.call('POST', '/faults', fault);
  }
  /** Grants or removes the guild's Admin role, or sets the member's roles; GUILD_MEMBER_UPDATE goes to the bot. */
  updateMember(request: { guild_id: string; user_id: string; admin?: boolean; role_ids?: string[] }): Promise<{ user_id: string; role_ids: string[]; admin: boolean; permissions: string }> {
    return this.call('POST', '/members', request);
  }
  createRole(request: { guild_id: string; name: string; permissions?: string }): Promise<Record<string, unknown> & { id: string }> {
    return this.call('POST', '/roles', request);
  }
  updateChannel(channelId: string, request: { name?: string; nsfw?: boolean }): Promise<{ id: string; name: string; nsfw: boolean }> {
    return this.call('POST', `/channels/${channelId}`, request);
  }
  restartBot(hard: boolean): Promise<Record<string, unknown>> {
    return this.call('POST', '/bot/restart', { hard });
  }

  /** Polls `GET /interactions/:id` until `predicate` holds. */
  async waitForInteraction(id: string, predicate: (interaction: SandboxInteraction) => boolean, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<SandboxInteraction> {
    return this.poll(() => this.interaction(id), predicate, options, `interaction ${id} did not reach the expected state`);
  }

  /** Polls a channel's history until a message matches. */
  async waitForMessage(channelId: string, predicate: (message: SandboxMessage) => boolean, options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<SandboxMessage> {
    const list = await this.poll(() => this.messages(channelId), (messages) => messages.some(predicate), options, `no message in channel ${channelId} matched`);
    return list.find(predicate) as SandboxMessage;
  }

  private async poll<T>(read: () => Promise<T>, predicate: (value: T) => boolean, options: { timeoutMs?: number; intervalMs?: number }, what: string): Promise<T> {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      const value = await read();
      if (predicate(value)) return value;
      if (Date.now() > deadline) throw new Error(`${what} within ${options.timeoutMs ?? 30_000} ms; last: ${JSON.stringify(value).slice(0, 2000)}`);
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
    }
  }
}
