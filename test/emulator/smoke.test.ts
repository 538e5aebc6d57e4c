import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ActionRowBuilder, AttachmentBuilder, ButtonBuilder, ButtonStyle, MessageFlags, SlashCommandBuilder, type Client, type Interaction } from 'discord.js';
import { startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { connectClient, controlJson, firstGuild, makePng } from './helpers.js';

// A discord.js bot's whole interaction flow through the emulator, over real HTTP and WebSocket.
describe('discord.js smoke test through the emulator', () => {
  let emulator: DiscordEmulator;
  let client: Client;
  const png = makePng(64, 48);
  const handlers: ((interaction: Interaction) => Promise<void>)[] = [];

  before(async () => {
    emulator = await startDiscordEmulator();
    client = await connectClient(emulator);
    client.on('interactionCreate', (interaction) => {
      for (const handler of handlers) void handler(interaction).catch((error: unknown) => console.error('handler failed', error));
    });
  });
  after(async () => {
    await client?.destroy();
    await emulator?.stop();
  });

  it('logs in: READY and GUILD_CREATE make every seeded guild and channel available', () => {
    const { guild, general, nsfw } = firstGuild(emulator);
    assert.equal(client.user?.id, emulator.applicationId);
    assert.equal(client.application?.id, emulator.applicationId);
    assert.equal(client.guilds.cache.size, 2);
    const cached = client.guilds.cache.get(guild.id);
    assert.ok(cached?.available);
    const channel = client.channels.cache.get(nsfw.id);
    assert.ok(channel && 'nsfw' in channel && channel.nsfw === true);
    assert.ok(client.channels.cache.get(general.id));
  });

  it('registers global and guild commands; the control API shows them as stored', async () => {
    const { guild } = firstGuild(emulator);
    const imagine = new SlashCommandBuilder()
      .setName('imagine')
      .setDescription('Draw a picture')
      .addStringOption((o) => o.setName('prompt').setDescription('What to draw').setRequired(true).setMaxLength(500))
      .addIntegerOption((o) => o.setName('steps').setDescription('Steps').setMinValue(1).setMaxValue(50));
    const settings = new SlashCommandBuilder().setName('settings').setDescription('Server settings').setDefaultMemberPermissions(1n << 5n);
    const global = await client.application!.commands.set([imagine.toJSON()]);
    assert.equal(global.size, 1);
    const local = await client.application!.commands.set([settings.toJSON()], guild.id);
    assert.equal(local.first()?.guildId, guild.id);
    const { data } = await controlJson<Record<string, unknown>[]>(emulator, 'GET', '/commands');
    const names = data.map((c) => `${String(c.name)}@${String(c.guild_id ?? 'global')}`).sort();
    assert.deepEqual(names, [`imagine@global`, `settings@${guild.id}`]);
    const stored = data.find((c) => c.name === 'imagine') as { id: string; options: { name: string; required: boolean }[] };
    assert.match(stored.id, /^\d{17,20}$/);
    assert.deepEqual(stored.options.map((o) => [o.name, o.required]), [['prompt', true], ['steps', false]]);
    // Re-registering keeps ids stable by name, as Discord does.
    const again = await client.application!.commands.set([imagine.toJSON()]);
    assert.equal(again.first()?.id, stored.id);
  });

  it('receives a command, defers, edits with a PNG attachment, follows up, and a button click updates the message', async () => {
    const { guild, general, member } = firstGuild(emulator);
    handlers.length = 0;
    const seen: { prompt: string; steps: number | null; channelId: string; userId: string }[] = [];
    handlers.push(async (interaction) => {
      if (interaction.isChatInputCommand() && interaction.commandName === 'imagine') {
        seen.push({ prompt: interaction.options.getString('prompt', true), steps: interaction.options.getInteger('steps'), channelId: interaction.channelId, userId: interaction.user.id });
        await interaction.deferReply();
        await interaction.editReply({
          content: 'done: a cat',
          files: [new AttachmentBuilder(png, { name: 'cat.png' })],
          components: [new ActionRowBuilder<ButtonBuilder>().addComponents(new ButtonBuilder().setCustomId('reroll').setLabel('Re-roll').setStyle(ButtonStyle.Primary))],
        });
        await interaction.followUp({ content: 'only you can see this', flags: MessageFlags.Ephemeral });
        await interaction.followUp({ content: 'public follow-up' });
      } else if (interaction.isButton() && interaction.customId === 'reroll') {
        await interaction.update({ content: 'rerolled', components: [] });
      }
    });

    const invoked = await controlJson<{ interaction_id: string; delivered: boolean }>(emulator, 'POST', '/commands', {
      user_id: member.id,
      guild_id: guild.id,
      channel_id: general.id,
      name: 'imagine',
      options: { prompt: 'a cat', steps: 20 },
    });
    assert.equal(invoked.status, 200);
    assert.equal(invoked.data.delivered, true);
    const id = invoked.data.interaction_id;
    const view = await emulator.waitForInteraction(id, (v) => Array.isArray(v.followups) && v.followups.length === 2, 15_000);
    assert.deepEqual(seen, [{ prompt: 'a cat', steps: 20, channelId: general.id, userId: member.id }]);

    const { data: interaction } = await controlJson<{ acked: boolean; ack_type: number; ack_ms: number; ephemeral: boolean; original: { id: string; content: string; attachments: { filename: string; content_type: string; size: number; width: number; height: number; url: string }[] }; followups: { content: string; ephemeral: boolean }[] }>(emulator, 'GET', `/interactions/${id}`);
    assert.equal(interaction.acked, true);
    assert.equal(interaction.ack_type, 5);
    assert.ok(interaction.ack_ms >= 0 && interaction.ack_ms < 3000);
    assert.equal(interaction.ephemeral, false);
    assert.equal(interaction.original.content, 'done: a cat');
    assert.deepEqual(interaction.followups.map((f) => [f.content, f.ephemeral]), [['only you can see this', true], ['public follow-up', false]]);
    assert.equal(view.acked, true);

    // The channel shows the edited original and the public follow-up, not the ephemeral one.
    const { data: history } = await controlJson<{ id: string; content: string; author_id: string; edit_count: number; flags: number; attachments: { filename: string; content_type: string; size: number; width: number; height: number; url: string }[] }[]>(emulator, 'GET', `/channels/${general.id}/messages`);
    assert.deepEqual(history.map((m) => m.content), ['done: a cat', 'public follow-up']);
    const original = history[0]!;
    assert.equal(original.id, interaction.original.id);
    assert.equal(original.author_id, emulator.applicationId);
    assert.equal(original.edit_count, 1);
    assert.equal(original.flags & 128, 0, 'the LOADING flag is cleared by the edit');
    assert.equal(original.attachments.length, 1);
    const attachment = original.attachments[0]!;
    assert.deepEqual([attachment.filename, attachment.content_type, attachment.size, attachment.width, attachment.height], ['cat.png', 'image/png', png.length, 64, 48]);
    const download = await fetch(attachment.url);
    assert.equal(download.status, 200);
    assert.equal(download.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await download.arrayBuffer()).equals(png), 'downloaded bytes equal the uploaded PNG');

    // discord.js saw the message too (MESSAGE_CREATE/UPDATE with the GuildMessages intent).
    const channel = client.channels.cache.get(general.id);
    assert.ok(channel?.isTextBased());
    const fetched = await channel.messages.fetch(original.id);
    assert.equal(fetched.attachments.first()?.width, 64);

    // Click the button: the message is updated in place.
    const click = await controlJson<{ interaction_id: string }>(emulator, 'POST', '/clicks', { user_id: member.id, message_id: original.id, custom_id: 'reroll' });
    assert.equal(click.status, 200);
    const clicked = await emulator.waitForInteraction(click.data.interaction_id, (v) => v.acked === true, 10_000);
    assert.equal(clicked.ack_type, 7);
    const after = emulator.channelMessages(general.id).find((m) => m.id === original.id);
    assert.equal(after?.content, 'rerolled');
    assert.deepEqual(after?.components, []);
  });

  it('ephemeral replies are not in channel history but are visible through the interaction', async () => {
    const { guild, nsfw, member } = firstGuild(emulator);
    handlers.length = 0;
    handlers.push(async (interaction) => {
      if (interaction.isChatInputCommand()) await interaction.reply({ content: 'secret', flags: MessageFlags.Ephemeral });
    });
    const { interaction_id } = emulator.invokeCommand({ user_id: member.id, guild_id: guild.id, channel_id: nsfw.id, name: 'imagine', options: { prompt: 'x' } });
    const view = await emulator.waitForInteraction(interaction_id, (v) => v.acked === true, 10_000);
    assert.equal(view.ephemeral, true);
    assert.equal((view.original as { content: string }).content, 'secret');
    assert.deepEqual(emulator.channelMessages(nsfw.id), []);
  });

  it('survives a gateway drop: the client resumes and receives interactions dispatched meanwhile', async () => {
    const { guild, general, member } = firstGuild(emulator);
    handlers.length = 0;
    handlers.push(async (interaction) => {
      if (interaction.isChatInputCommand()) await interaction.reply({ content: `resumed ${interaction.options.getString('prompt')}` });
    });
    const resumed = new Promise<void>((resolve) => client.once('shardResume', () => resolve()));
    const dropped = await controlJson<{ dropped: number }>(emulator, 'POST', '/faults', { kind: 'gateway_drop' });
    assert.equal(dropped.data.dropped, 1);
    // Dispatched while the socket is down: buffered and replayed on RESUME.
    const { interaction_id } = emulator.invokeCommand({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'imagine', options: { prompt: 'after drop' } });
    await resumed;
    const view = await emulator.waitForInteraction(interaction_id, (v) => v.acked === true, 10_000);
    assert.equal((view.original as { content: string }).content, 'resumed after drop');
    assert.equal(emulator.gateway.sessions.size, 1, 'the same session was resumed, not a new IDENTIFY');
  });
});
