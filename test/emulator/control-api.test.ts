import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { join } from 'node:path';
import { MessageFlags, type Client, type Interaction } from 'discord.js';
import { SandboxClient, startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { connectClient, controlJson, firstGuild, makePng } from './helpers.js';

describe('control API and less common interaction paths', () => {
  let emulator: DiscordEmulator;
  let client: Client;
  let sandbox: SandboxClient;
  let next: ((interaction: Interaction) => Promise<void>) | null = null;

  before(async () => {
    emulator = await startDiscordEmulator();
    sandbox = new SandboxClient(emulator.url);
    client = await connectClient(emulator);
    client.on('interactionCreate', (interaction) => void next?.(interaction).catch((error: unknown) => console.error(error)));
    await client.application!.commands.set([
      { name: 'form', description: 'opens a modal' },
      { name: 'pick', description: 'a select menu' },
      { name: 'upscale', description: 'takes a file', options: [{ type: 11, name: 'image', description: 'an image', required: true }] },
      { name: 'slow', description: 'defers then follows up' },
      { name: 'admin', description: 'admins only', default_member_permissions: String(1 << 5) },
      { name: 'style', description: 'autocomplete', options: [{ type: 3, name: 'look', description: 'a look', required: true, autocomplete: true }, { type: 4, name: 'n', description: 'n' }] },
    ]);
  });
  after(async () => {
    await client?.destroy();
    await emulator?.stop();
  });

  it('GET /state lists guilds with channels and members, users with admin flags, the application id', async () => {
    const state = await sandbox.state();
    assert.equal(state.application_id, emulator.applicationId);
    assert.match(state.application_id, /^\d{17,20}$/);
    assert.equal(state.users.length, 3);
    assert.deepEqual(state.users.map((u) => u.admin), [true, false, false]);
    for (const guild of state.guilds) {
      assert.match(guild.id, /^\d{17,20}$/);
      assert.deepEqual(guild.channels.map((c) => c.nsfw), [false, true]);
    }
  });

  it('GET /commands returns commands as Discord stores them', async () => {
    const commands = await sandbox.commands();
    const form = commands.find((c) => c.name === 'form')!;
    for (const field of ['id', 'application_id', 'version', 'type', 'name', 'description', 'default_member_permissions', 'integration_types', 'nsfw']) {
      assert.ok(field in form, `${field} is stored`);
    }
    assert.equal(form.application_id, emulator.applicationId);
    assert.equal(form.type, 1);
  });

  it('a seed file defines the world', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'emulator-seed-'));
    try {
      const file = join(dir, 'seed.json');
      writeFileSync(file, JSON.stringify({ application: { name: 'Painter' }, users: [{ username: 'owner' }, { username: 'guest' }], guilds: [{ name: 'Art Club', channels: [{ name: 'lobby' }, { name: 'nsfw-art', nsfw: true }], members: [{ user: 'owner', admin: true }, { user: 'guest' }] }] }));
      const seeded = await startDiscordEmulator({ seedFile: file });
      try {
        const { data } = await controlJson<{ guilds: { name: string; channels: { name: string; nsfw: boolean }[] }[]; users: { username: string; admin: boolean }[] }>(seeded, 'GET', '/state');
        assert.deepEqual(data.guilds.map((g) => [g.name, g.channels.map((c) => `${c.name}:${c.nsfw}`)]), [['Art Club', ['lobby:false', 'nsfw-art:true']]]);
        assert.deepEqual(data.users.map((u) => [u.username, u.admin]), [['owner', true], ['guest', false]]);
      } finally {
        await seeded.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('POST /faults refuses unknown kinds and bad values; advance_clock moves the interaction clock', async () => {
    assert.equal((await controlJson(emulator, 'POST', '/faults', { kind: 'meteor' })).status, 400);
    assert.equal((await controlJson(emulator, 'POST', '/faults', { kind: 'advance_clock', seconds: -1 })).status, 400);
    assert.equal((await controlJson(emulator, 'POST', '/faults', { kind: 'rate_limit' })).status, 400);
    const before = emulator.clock.now();
    const { data } = await controlJson<{ clock_offset_seconds: number }>(emulator, 'POST', '/faults', { kind: 'advance_clock', seconds: 2 });
    assert.ok(data.clock_offset_seconds >= 2);
    assert.ok(emulator.clock.now() - before >= 2000);
  });

  it('refuses requests from other origins or hosts (another web page, DNS rebinding)', async () => {
    const foreign = await fetch(`${emulator.url}/_sandbox/state`, { headers: { Origin: 'https://evil.example' } });
    assert.equal(foreign.status, 403);
    // fetch cannot set Host; node:http can.
    const reboundStatus = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: emulator.port, path: '/_sandbox/state', headers: { Host: 'evil.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(reboundStatus, 403);
    const same = await fetch(`${emulator.url}/_sandbox/state`, { headers: { Origin: emulator.url } });
    assert.equal(same.status, 200);
  });

  it('unknown ids answer 404 with a reason', async () => {
    assert.equal((await controlJson(emulator, 'GET', '/interactions/123456789012345678')).status, 404);
    assert.equal((await controlJson(emulator, 'GET', '/channels/123456789012345678/messages')).status, 404);
    assert.equal((await controlJson(emulator, 'POST', '/clicks', { user_id: '1', message_id: '123456789012345678', custom_id: 'x' })).status, 404);
  });

  it('a modal opened by the bot can be submitted, and the submission is a modal interaction', async () => {
    const { guild, general, member } = firstGuild(emulator);
    let submitted = '';
    next = async (interaction) => {
      if (interaction.isChatInputCommand()) {
        await interaction.showModal({ custom_id: 'form-1', title: 'Tell me', components: [{ type: 1, components: [{ type: 4, custom_id: 'answer', label: 'Answer', style: 1 }] }] });
      } else if (interaction.isModalSubmit()) {
        submitted = interaction.fields.getTextInputValue('answer');
        await interaction.reply({ content: `thanks: ${submitted}`, flags: MessageFlags.Ephemeral });
      }
    };
    const { interaction_id } = await sandbox.invoke({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'form' });
    const opened = await sandbox.waitForInteraction(interaction_id, (i) => i.acked);
    assert.equal(opened.ack_type, 9);
    assert.equal((opened.modal as { title: string }).title, 'Tell me');
    const { status, data } = await controlJson<{ interaction_id: string }>(emulator, 'POST', '/modals', { interaction_id, user_id: member.id, values: { answer: '42' } });
    assert.equal(status, 200);
    const reply = await sandbox.waitForInteraction(data.interaction_id, (i) => i.acked);
    assert.equal(reply.type, 5);
    assert.equal(reply.original?.content, 'thanks: 42');
    assert.equal(submitted, '42');
  });

  it('select menus are clicked with values, checked against the options', async () => {
    const { guild, general, member } = firstGuild(emulator);
    next = async (interaction) => {
      if (interaction.isChatInputCommand()) {
        await interaction.reply({ content: 'pick one', components: [{ type: 1, components: [{ type: 3, custom_id: 'size', options: [{ label: 'Small', value: '512' }, { label: 'Large', value: '768' }] }] }] });
      } else if (interaction.isStringSelectMenu()) {
        await interaction.update({ content: `picked ${interaction.values.join(',')}`, components: [] });
      }
    };
    const { interaction_id } = await sandbox.invoke({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'pick' });
    const shown = await sandbox.waitForInteraction(interaction_id, (i) => i.acked);
    const messageId = shown.original!.id;
    await assert.rejects(sandbox.click({ user_id: member.id, message_id: messageId, custom_id: 'size', values: ['640'] }), /not an option/);
    const click = await sandbox.click({ user_id: member.id, message_id: messageId, custom_id: 'size', values: ['768'] });
    const done = await sandbox.waitForInteraction(click.interaction_id, (i) => i.acked);
    assert.equal(done.original?.content, 'picked 768');
  });

  it('attachment options: POST /attachments uploads a file that the bot receives in resolved.attachments and can download', async () => {
    const { guild, general, member } = firstGuild(emulator);
    const png = makePng(20, 10);
    let downloaded: Buffer | null = null;
    next = async (interaction) => {
      if (!interaction.isChatInputCommand()) return;
      const attachment = interaction.options.getAttachment('image', true);
      downloaded = Buffer.from(await (await fetch(attachment.url)).arrayBuffer());
      await interaction.reply(`got ${attachment.name} ${attachment.width}x${attachment.height}`);
    };
    const { data: uploaded } = await controlJson<{ id: string }>(emulator, 'POST', '/attachments', { filename: 'in.png', content_base64: png.toString('base64') });
    const { interaction_id } = await sandbox.invoke({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'upscale', options: { image: uploaded.id } });
    const view = await sandbox.waitForInteraction(interaction_id, (i) => i.acked);
    assert.equal(view.original?.content, 'got in.png 20x10');
    assert.ok(downloaded && (downloaded as Buffer).equals(png));
  });

  it('the first follow-up after a deferral completes the "thinking…" message (as on Discord); later ones are new messages', async () => {
    const { guild, general, member } = firstGuild(emulator);
    next = async (interaction) => {
      if (!interaction.isChatInputCommand()) return;
      await interaction.deferReply();
      await interaction.followUp('first');
      await interaction.followUp('second');
    };
    const { interaction_id } = await sandbox.invoke({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'slow' });
    const view = await sandbox.waitForInteraction(interaction_id, (i) => i.followups.length === 1);
    assert.equal(view.original?.content, 'first');
    assert.equal(view.original?.loading, false);
    assert.deepEqual(view.followups.map((f) => f.content), ['second']);
    // The history keeps the loading state and every revision, for progress-edit assertions.
    assert.deepEqual(view.original?.history.map((h) => [h.content, h.flags & 128]), [['', 128], ['first', 0]]);
  });

  it('members, roles and channels can be changed at run time; the bot sees the gateway events', async () => {
    const { guild, general, member } = firstGuild(emulator);
    const base = { user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'admin' };
    await assert.rejects(sandbox.invoke(base), /lacks the permissions/);
    const promoted = await controlJson<{ admin: boolean }>(emulator, 'POST', '/members', { guild_id: guild.id, user_id: member.id, admin: true });
    assert.equal(promoted.data.admin, true);
    let permissions: boolean | undefined;
    next = async (interaction) => {
      if (!interaction.isChatInputCommand()) return;
      permissions = interaction.memberPermissions?.has('ManageGuild');
      await interaction.reply('ok');
    };
    const { interaction_id } = await sandbox.invoke(base);
    await sandbox.waitForInteraction(interaction_id, (i) => i.acked);
    assert.equal(permissions, true);
    await controlJson(emulator, 'POST', '/members', { guild_id: guild.id, user_id: member.id, admin: false });
    await assert.rejects(sandbox.invoke(base), /lacks the permissions/);

    const updated = new Promise<boolean>((resolve) => client.once('channelUpdate', (_old, channel) => resolve('nsfw' in channel && channel.nsfw === true)));
    assert.equal((await controlJson(emulator, 'POST', `/channels/${general.id}`, { nsfw: true })).status, 200);
    assert.equal(await updated, true);
    await controlJson(emulator, 'POST', `/channels/${general.id}`, { nsfw: false });

    const created = new Promise<string>((resolve) => client.once('roleCreate', (role) => resolve(role.name)));
    const { data: role } = await controlJson<{ id: string }>(emulator, 'POST', '/roles', { guild_id: guild.id, name: 'Artists', permissions: '0' });
    assert.equal(await created, 'Artists');
    const assigned = await controlJson<{ role_ids: string[] }>(emulator, 'POST', '/members', { guild_id: guild.id, user_id: member.id, role_ids: [role.id] });
    assert.deepEqual(assigned.data.role_ids, [role.id]);
    const state = await sandbox.state();
    assert.ok(state.guilds[0]!.members.some((m) => m.user_id === member.id && (m as { role_ids?: string[] }).role_ids?.includes(role.id)));
  });

  it('reply withResponse returns the created message; fetchReply and deleteReply work on @original', async () => {
    const { guild, general, member } = firstGuild(emulator);
    const seen: { responseContent?: string; fetched?: string; deletedEvent?: string } = {};
    const deleted = new Promise<string>((resolve) => client.once('messageDelete', (message) => resolve(message.id)));
    next = async (interaction) => {
      if (!interaction.isChatInputCommand()) return;
      const response = await interaction.reply({ content: 'with response', withResponse: true });
      seen.responseContent = response.resource?.message?.content;
      seen.fetched = (await interaction.fetchReply()).content;
      await interaction.deleteReply();
    };
    const { interaction_id } = await sandbox.invoke({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'slow' });
    const messageId = await deleted;
    assert.deepEqual(seen, { responseContent: 'with response', fetched: 'with response' });
    const view = await sandbox.interaction(interaction_id);
    assert.equal(view.original, null, 'the deleted original is gone');
    assert.ok(!(await sandbox.messages(general.id)).some((m) => m.id === messageId));
  });

  it('autocomplete: POST /autocomplete sends the focused partial value; the bot answers with choices (type 8)', async () => {
    const { guild, general, member } = firstGuild(emulator);
    let focused: { name: string; value: string } | null = null;
    next = async (interaction) => {
      if (!interaction.isAutocomplete()) return;
      focused = interaction.options.getFocused(true) as { name: string; value: string };
      await interaction.respond([{ name: 'Watercolor', value: 'watercolor' }, { name: 'Water lilies', value: 'lilies' }]);
    };
    const base = { user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'style' };
    const { status, data } = await controlJson<{ interaction_id: string }>(emulator, 'POST', '/autocomplete', { ...base, options: { look: 'wat' }, focused: 'look' });
    assert.equal(status, 200);
    const view = await sandbox.waitForInteraction(data.interaction_id, (i) => i.acked);
    assert.equal(view.ack_type, 8);
    assert.deepEqual(view.choices, [{ name: 'Watercolor', value: 'watercolor' }, { name: 'Water lilies', value: 'lilies' }]);
    assert.deepEqual(focused, { name: 'look', type: 3, value: 'wat', focused: true });
    const refused = await controlJson<{ error: string }>(emulator, 'POST', '/autocomplete', { ...base, options: {}, focused: 'n' });
    assert.equal(refused.status, 400);
    assert.match(refused.data.error, /does not have autocomplete/);
  });

  it('files go through every path: multipart callback (reply), follow-up, channel message, and edits that keep or drop them', async () => {
    const { guild, general, member } = firstGuild(emulator);
    const a = makePng(10, 10, [1, 2, 3]);
    const b = makePng(12, 12, [4, 5, 6]);
    let channelMessageId = '';
    next = async (interaction) => {
      if (!interaction.isChatInputCommand()) return;
      await interaction.reply({ content: 'reply with a file', files: [{ attachment: a, name: 'a.png' }] });
      await interaction.followUp({ content: 'follow-up with a file', files: [{ attachment: b, name: 'b.png' }] });
      // Editing only the content keeps the attachment; adding a file with the old one listed keeps both.
      const edited = await interaction.editReply({ content: 'edited text only' });
      const both = await interaction.editReply({ files: [{ attachment: b, name: 'b2.png' }], attachments: [...edited.attachments.values()] });
      assert.equal(both.attachments.size, 2);
      const channel = interaction.channel;
      assert.ok(channel?.isSendable());
      const posted = await channel.send({ content: 'channel post', files: [{ attachment: a, name: 'c.png' }] });
      channelMessageId = posted.id;
      await posted.edit({ content: 'channel post, file removed', attachments: [] });
    };
    const { interaction_id } = await sandbox.invoke({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'slow' });
    await emulator.waitFor(() => (channelMessageId && emulator.messages.get(channelMessageId)?.editCount === 1 ? true : null), 15_000, 'the channel post was not edited');
    const view = await sandbox.interaction(interaction_id);
    assert.deepEqual(view.original?.attachments.map((x) => x.filename), ['a.png', 'b2.png']);
    assert.equal(view.original?.content, 'edited text only');
    assert.deepEqual(view.followups[0]?.attachments.map((x) => [x.filename, x.width]), [['b.png', 12]]);
    const downloaded = Buffer.from(await (await fetch(view.original!.attachments[0]!.url)).arrayBuffer());
    assert.ok(downloaded.equals(a));
    const post = (await sandbox.messages(general.id)).find((m) => m.id === channelMessageId);
    assert.equal(post?.content, 'channel post, file removed');
    assert.deepEqual(post?.attachments, []);
    assert.deepEqual(post?.history.map((h) => h.attachments), [['c.png'], []]);
  });

  it('GET /log records every bot REST call with method, route template, status and time', async () => {
    const log = await sandbox.log();
    assert.ok(log.length > 0);
    for (const entry of log) {
      assert.ok(entry.at && entry.method && entry.route && typeof entry.status === 'number');
      assert.ok(!/aW50ZXJhY3Rpb246/.test(entry.path), 'interaction tokens are not written to the log');
    }
    assert.ok(log.some((e) => e.method === 'GET' && e.route === '/gateway/bot' && e.status === 200));
  });
});
