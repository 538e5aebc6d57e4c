import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DiscordAPIError, MessageFlags, Routes, type ChatInputCommandInteraction, type Client, type Interaction, AttachmentBuilder } from 'discord.js';
import WebSocket from 'ws';
import { startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { connectClient, controlJson, firstGuild, makePng, rawGatewaySession } from './helpers.js';

/** Expects a discord.js DiscordAPIError with Discord's status and code. */
async function rejectsWith(promise: Promise<unknown>, status: number, code: number, errorsContain?: string): Promise<DiscordAPIError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DiscordAPIError, `expected DiscordAPIError, got ${String(error)}`);
    assert.equal(error.status, status, `status for ${error.message}`);
    assert.equal(error.code, code, `code for ${error.message}`);
    if (errorsContain) assert.ok(JSON.stringify(error.rawError).includes(errorsContain), `${JSON.stringify(error.rawError)} should mention ${errorsContain}`);
    return error;
  }
  assert.fail(`expected a ${status}/${code} error`);
}

describe("Discord's rules, failing the way Discord fails", () => {
  let emulator: DiscordEmulator;
  let client: Client;
  let waiting: ((interaction: Interaction) => void)[] = [];
  const ids = () => firstGuild(emulator);

  /** Invokes /test through the control API and returns the interaction discord.js received. */
  async function invoke(options: Record<string, unknown> = { text: 'hi' }, flags: Record<string, unknown> = {}): Promise<ChatInputCommandInteraction> {
    const { guild, general, member } = ids();
    const received = new Promise<Interaction>((resolve) => waiting.push(resolve));
    const { status, data } = await controlJson<{ interaction_id: string }>(emulator, 'POST', '/commands', { user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'test', options, ...flags });
    assert.equal(status, 200, JSON.stringify(data));
    const interaction = await received;
    assert.ok(interaction.isChatInputCommand());
    assert.equal(interaction.id, data.interaction_id);
    return interaction;
  }
  const callback = (interaction: Interaction, body: unknown) => client.rest.post(Routes.interactionCallback(interaction.id, interaction.token), { body, auth: false });
  const editOriginal = (interaction: Interaction, body: unknown, files?: { name: string; data: Buffer }[]) =>
    client.rest.patch(Routes.webhookMessage(emulator.applicationId, interaction.token, '@original'), { body, auth: false, files });

  before(async () => {
    emulator = await startDiscordEmulator();
    client = await connectClient(emulator);
    client.on('interactionCreate', (interaction) => {
      const resolve = waiting.shift();
      resolve?.(interaction);
    });
    const { guild } = firstGuild(emulator);
    await client.application!.commands.set([
      {
        name: 'test',
        description: 'test command',
        options: [
          { type: 3, name: 'text', description: 'text', required: true, max_length: 20 },
          { type: 4, name: 'count', description: 'count', min_value: 1, max_value: 10 },
          { type: 10, name: 'scale', description: 'scale', min_value: 0.5, max_value: 2.5 },
          { type: 5, name: 'flag', description: 'flag' },
          { type: 3, name: 'size', description: 'size', choices: [{ name: 'small', value: '512' }, { name: 'large', value: '768' }] },
          { type: 6, name: 'who', description: 'user' },
        ],
      },
      { name: 'adult', description: 'age-restricted', nsfw: true },
      { name: 'config', description: 'with subcommands', options: [{ type: 1, name: 'show', description: 'show' }, { type: 1, name: 'set', description: 'set', options: [{ type: 3, name: 'key', description: 'key', required: true }] }] },
    ]);
    await client.application!.commands.set([{ name: 'settings', description: 'admin only', default_member_permissions: String(1 << 5) }], guild.id);
  });
  beforeEach(() => {
    waiting = [];
  });
  after(async () => {
    await client?.destroy();
    await emulator?.stop();
  });

  it('no acknowledgement within 3 s: the callback gets 404 / 10062 Unknown interaction', async () => {
    const interaction = await invoke();
    await emulator.injectFault({ kind: 'advance_clock', seconds: 3.5 });
    await rejectsWith(interaction.deferReply(), 404, 10062);
    const view = emulator.interaction(interaction.id);
    assert.equal(view?.acked, false);
    assert.equal(view?.failed, true);
  });

  it('a second acknowledgement gets 400 / 40060', async () => {
    const interaction = await invoke();
    await callback(interaction, { type: 5 });
    await rejectsWith(callback(interaction, { type: 4, data: { content: 'again' } }), 400, 40060);
  });

  it('interaction-token calls after 15 minutes get 401 / 50027 Invalid Webhook Token', async () => {
    const interaction = await invoke();
    await interaction.deferReply();
    await interaction.editReply('still valid');
    await controlJson(emulator, 'POST', '/faults', { kind: 'advance_clock', seconds: 15 * 60 + 1 });
    await rejectsWith(interaction.editReply('too late'), 401, 50027);
    await rejectsWith(interaction.followUp('too late'), 401, 50027);
  });

  it('webhook calls before any acknowledgement get 404 / 10015 Unknown Webhook', async () => {
    const interaction = await invoke();
    await rejectsWith(editOriginal(interaction, { content: 'early' }), 404, 10015);
  });

  it('content over 2000 characters: 400 / 50035 BASE_TYPE_MAX_LENGTH on data.content', async () => {
    const interaction = await invoke();
    await rejectsWith(callback(interaction, { type: 4, data: { content: 'x'.repeat(2001) } }), 400, 50035, 'BASE_TYPE_MAX_LENGTH');
    // Exactly 2000 is fine; the failed attempt did not count as an acknowledgement.
    await callback(interaction, { type: 4, data: { content: 'x'.repeat(2000) } });
    assert.equal(emulator.interaction(interaction.id)?.acked, true);
    await rejectsWith(editOriginal(interaction, { content: 'y'.repeat(2001) }), 400, 50035, '"content"');
  });

  it('more than 10 embeds, 5 action rows, 5 buttons in a row or a 100-character custom_id: 400 / 50035', async () => {
    const interaction = await invoke();
    await interaction.deferReply();
    const button = (id: string) => ({ type: 2, style: 1, label: 'go', custom_id: id });
    const row = (...buttons: unknown[]) => ({ type: 1, components: buttons });
    await rejectsWith(editOriginal(interaction, { embeds: Array.from({ length: 11 }, (_, i) => ({ title: `e${i}` })) }), 400, 50035, '"embeds"');
    await rejectsWith(editOriginal(interaction, { components: Array.from({ length: 6 }, (_, i) => row(button(`r${i}`))) }), 400, 50035, '"components"');
    await rejectsWith(editOriginal(interaction, { components: [row(...Array.from({ length: 6 }, (_, i) => button(`b${i}`)))] }), 400, 50035, 'BASE_TYPE_MAX_LENGTH');
    await rejectsWith(editOriginal(interaction, { components: [row(button('x'.repeat(101)))] }), 400, 50035, 'custom_id');
    await rejectsWith(editOriginal(interaction, { components: [row(button('same'), button('same'))] }), 400, 50035, 'COMPONENT_CUSTOM_ID_DUPLICATED');
    // The limits themselves are allowed.
    await editOriginal(interaction, {
      embeds: Array.from({ length: 10 }, (_, i) => ({ title: `e${i}` })),
      components: Array.from({ length: 5 }, (_, r) => row(...Array.from({ length: 5 }, (_, b) => button(`${r}-${b}-${'z'.repeat(90)}`)))),
    });
    const original = emulator.interaction(interaction.id)?.original as { embeds: unknown[]; components: unknown[] };
    assert.equal(original.embeds.length, 10);
    assert.equal(original.components.length, 5);
  });

  it('more than 10 attachments: 400 / 50035; a file over 10 MiB: 413 / 40005', async () => {
    const interaction = await invoke();
    await interaction.deferReply();
    const png = makePng(4, 4);
    await rejectsWith(interaction.editReply({ files: Array.from({ length: 11 }, (_, i) => new AttachmentBuilder(png, { name: `f${i}.png` })) }), 400, 50035, '"attachments"');
    await rejectsWith(interaction.editReply({ files: [new AttachmentBuilder(Buffer.alloc(10 * 1024 * 1024 + 1), { name: 'big.bin' })] }), 413, 40005);
    const message = await interaction.editReply({ files: Array.from({ length: 10 }, (_, i) => new AttachmentBuilder(png, { name: `f${i}.png` })) });
    assert.equal(message.attachments.size, 10);
  });

  it('an empty message is refused with 400 / 50006; malformed JSON with 400 / 50109', async () => {
    const interaction = await invoke();
    await rejectsWith(callback(interaction, { type: 4, data: { content: '' } }), 400, 50006);
    const response = await fetch(`${emulator.apiBase}/v10/interactions/${interaction.id}/${interaction.token}/callback`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"type": 4,' });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { code: number }).code, 50109);
  });

  it('a callback type the interaction cannot take (UPDATE_MESSAGE for a command) is 400 / 50035', async () => {
    const interaction = await invoke();
    await rejectsWith(callback(interaction, { type: 7, data: { content: 'x' } }), 400, 50035, 'BASE_TYPE_CHOICES');
  });

  it('option values are checked against the registered command, as Discord\'s client does', async () => {
    const { guild, general, nsfw, member, admin } = ids();
    const base = { user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'test' };
    const refused = async (body: Record<string, unknown>, reason: RegExp) => {
      const { status, data } = await controlJson<{ error: string }>(emulator, 'POST', '/commands', body);
      assert.equal(status, 400, `expected 400 for ${JSON.stringify(body)}`);
      assert.match(data.error, reason);
    };
    await refused({ ...base, options: {} }, /"text" is required/);
    await refused({ ...base, options: { text: 'x'.repeat(21) } }, /at most 20/);
    await refused({ ...base, options: { text: 'a', count: 0 } }, /at least 1/);
    await refused({ ...base, options: { text: 'a', count: 11 } }, /at most 10/);
    await refused({ ...base, options: { text: 'a', count: 2.5 } }, /not an integer/);
    await refused({ ...base, options: { text: 'a', count: 'many' } }, /not a number/);
    await refused({ ...base, options: { text: 'a', scale: 3 } }, /at most 2.5/);
    await refused({ ...base, options: { text: 'a', flag: 'yes' } }, /true or false/);
    await refused({ ...base, options: { text: 'a', size: '640' } }, /not one of the choices/);
    await refused({ ...base, options: { text: 'a', who: '123456789012345678' } }, /not a member/);
    await refused({ ...base, options: { text: 'a', nope: 1 } }, /no option "nope"/);
    await refused({ ...base, name: 'missing' }, /no registered chat-input command/);
    await refused({ ...base, name: 'adult' }, /NSFW channels/);
    await refused({ ...base, name: 'config' }, /needs a subcommand/);
    await refused({ ...base, name: 'config', subcommand: 'set', options: {} }, /"key" is required/);
    await refused({ ...base, name: 'settings' }, /lacks the permissions/);

    // Accepted invocations carry typed, coerced values and resolved users.
    waiting = [];
    const received = new Promise<Interaction>((resolve) => waiting.push(resolve));
    const ok = await controlJson<{ interaction_id: string }>(emulator, 'POST', '/commands', { ...base, options: { text: 'a', count: '3', scale: 1.5, flag: true, size: '768', who: admin.id } });
    assert.equal(ok.status, 200);
    const interaction = await received;
    assert.ok(interaction.isChatInputCommand());
    assert.equal(interaction.options.getInteger('count'), 3);
    assert.equal(interaction.options.getNumber('scale'), 1.5);
    assert.equal(interaction.options.getBoolean('flag'), true);
    assert.equal(interaction.options.getString('size'), '768');
    assert.equal(interaction.options.getUser('who')?.id, admin.id);
    await interaction.reply('ok');

    // Subcommands, NSFW commands in NSFW channels, admin-only commands for admins.
    for (const body of [
      { ...base, name: 'config', subcommand: 'set', options: { key: 'steps' } },
      { ...base, channel_id: nsfw.id, name: 'adult' },
      { ...base, user_id: admin.id, name: 'settings' },
    ]) {
      const accepted = await controlJson(emulator, 'POST', '/commands', body);
      assert.equal(accepted.status, 200, JSON.stringify(body));
    }
  });

  it('bypass_permissions lets a member without the permission through, with their real permissions in the payload', async () => {
    const { guild, general, member } = ids();
    const received = new Promise<Interaction>((resolve) => waiting.push(resolve));
    const { status } = await controlJson(emulator, 'POST', '/commands', { user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'settings', bypass_permissions: true });
    assert.equal(status, 200);
    const interaction = await received;
    assert.equal(interaction.memberPermissions?.has('ManageGuild'), false, 'the bot must be able to see that the user lacks Manage Guild');
    if (interaction.isRepliable()) await interaction.reply({ content: 'denied', flags: MessageFlags.Ephemeral });
  });

  it('command registration is validated like Discord: 400 / 50035 with the error tree', async () => {
    await rejectsWith(client.rest.put(Routes.applicationCommands(emulator.applicationId), { body: [{ name: 'Imagine', description: 'upper case' }] }), 400, 50035, 'APPLICATION_COMMAND_INVALID_NAME');
    await rejectsWith(client.rest.post(Routes.applicationCommands(emulator.applicationId), { body: { name: 'ok', description: 'd'.repeat(101) } }), 400, 50035, 'BASE_TYPE_BAD_LENGTH');
    await rejectsWith(
      client.rest.post(Routes.applicationCommands(emulator.applicationId), { body: { name: 'ok', description: 'd', options: [{ type: 3, name: 'a', description: 'a' }, { type: 3, name: 'b', description: 'b', required: true }] } }),
      400,
      50035,
      'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID',
    );
    await rejectsWith(client.rest.get(Routes.applicationCommand(emulator.applicationId, '123456789012345678')), 404, 10063);
  });

  it('a wrong bot token: REST 401 / code 0, gateway IDENTIFY closed with 4004', async () => {
    const response = await fetch(`${emulator.apiBase}/v10/users/@me`, { headers: { Authorization: 'Bot not-the-token' } });
    assert.equal(response.status, 401);
    assert.deepEqual(await response.json(), { message: '401: Unauthorized', code: 0 });
    const code = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(`${emulator.gatewayUrl}?v=10&encoding=json`);
      socket.on('message', (raw) => {
        const message = JSON.parse(String(raw)) as { op: number };
        if (message.op === 10) socket.send(JSON.stringify({ op: 2, d: { token: 'wrong', intents: 1, properties: {} } }));
      });
      socket.on('close', (closeCode) => resolve(closeCode));
      socket.on('error', reject);
    });
    assert.equal(code, 4004);
  });

  it('gateway protocol errors: RESUME of an unknown session gets op 9, a second IDENTIFY closes 4005, an unknown op 4001', async () => {
    const session = (script: Parameters<typeof rawGatewaySession>[1]) => rawGatewaySession(emulator, script);
    const resumed = await session((send, seen) => {
      if (seen.length === 1) send({ op: 6, d: { token: emulator.token, session_id: 'no-such-session', seq: 3 } });
    });
    assert.deepEqual(resumed.seen.at(-1), { op: 9, d: false });
    const twice = await session((send, seen) => {
      if (seen.length === 1) send({ op: 2, d: { token: emulator.token, intents: 1, properties: {} } });
      if (seen.some((m) => m.t === 'GUILD_CREATE') && !seen.some((m) => m.op === -1)) {
        seen.push({ op: -1 });
        send({ op: 2, d: { token: emulator.token, intents: 1, properties: {} } });
      }
    });
    assert.equal(twice.code, 4005);
    assert.equal(twice.seen.filter((m) => m.t === 'READY').length, 1);
    const unknown = await session((send, seen) => {
      if (seen.length === 1) send({ op: 42, d: null });
    });
    assert.equal(unknown.code, 4001);
  });

  it('unknown routes are 404 / code 0 and recorded in the log as "unknown"', async () => {
    const response = await fetch(`${emulator.apiBase}/v10/not/a/route`, { headers: { Authorization: `Bot ${emulator.token}` } });
    assert.equal(response.status, 404);
    const { data: log } = await controlJson<{ route: string; status: number; method: string }[]>(emulator, 'GET', '/log');
    assert.ok(log.some((entry) => entry.route === 'unknown' && entry.status === 404));
    assert.ok(log.some((entry) => entry.route === '/interactions/:interaction_id/:token/callback' && entry.method === 'POST'));
  });

  it('clicks are refused for unknown or disabled components, as the client would', async () => {
    const interaction = await invoke();
    await callback(interaction, { type: 4, data: { content: 'buttons', components: [{ type: 1, components: [{ type: 2, style: 1, label: 'on', custom_id: 'on' }, { type: 2, style: 2, label: 'off', custom_id: 'off', disabled: true }] }] } });
    const messageId = (emulator.interaction(interaction.id)?.original as { id: string }).id;
    const { member } = ids();
    const missing = await controlJson<{ error: string }>(emulator, 'POST', '/clicks', { user_id: member.id, message_id: messageId, custom_id: 'nope' });
    assert.equal(missing.status, 400);
    const disabled = await controlJson<{ error: string }>(emulator, 'POST', '/clicks', { user_id: member.id, message_id: messageId, custom_id: 'off' });
    assert.equal(disabled.status, 400);
    assert.match(disabled.data.error, /disabled/);
  });
});
