import assert from 'node:assert/strict';
import { ActionRowBuilder, AttachmentBuilder, ButtonBuilder, ButtonStyle, MessageFlags, type Client } from 'discord.js';
import { startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { connectClient, firstGuild, makePng } from './helpers.js';
import { describeNeeding, findExecutable, missingProgram } from '../helpers/needs.js';

const CHROMIUM = findExecutable('chromium');
const skip = missingProgram('chromium', 'the sandbox page test needs a real browser');

// The sandbox page in headless Chromium: a person picks a user and a channel, types a command, sees the bot's
// progress edits and images, clicks a button; against a real discord.js bot on the emulator.
describeNeeding('the sandbox web page', skip, ({ it, before, after }) => {
  let emulator: DiscordEmulator;
  let client: Client;
  // Loaded lazily so that a machine without the browser only skips.
  let browser: import('playwright-core').Browser;

  before(async () => {
    emulator = await startDiscordEmulator();
    client = await connectClient(emulator);
    await client.application!.commands.set([
      { name: 'draw', description: 'Draw something', options: [{ type: 3, name: 'prompt', description: 'what', required: true }, { type: 4, name: 'steps', description: 'steps', min_value: 1, max_value: 4 }] },
      { name: 'secret', description: 'An ephemeral answer' },
      { name: 'feedback', description: 'Opens a form' },
    ]);
    client.on('interactionCreate', async (interaction) => {
      if (interaction.isChatInputCommand() && interaction.commandName === 'draw') {
        const prompt = interaction.options.getString('prompt', true);
        const steps = interaction.options.getInteger('steps') ?? 2;
        await interaction.deferReply();
        for (let step = 1; step <= steps; step += 1) {
          await interaction.editReply({ content: `drawing ${prompt}: ${step}/${steps}`, files: [new AttachmentBuilder(makePng(16, 16, [step * 60, 20, 20]), { name: `preview-${step}.png` })] });
          await new Promise((resolve) => setTimeout(resolve, 300));
        }
        await interaction.editReply({
          content: `done: ${prompt} for <@${interaction.user.id}>`,
          files: [new AttachmentBuilder(makePng(48, 32), { name: 'final.png' })],
          attachments: [],
          components: [new ActionRowBuilder<ButtonBuilder>().addComponents(new ButtonBuilder().setCustomId('reroll').setLabel('Re-roll').setStyle(ButtonStyle.Primary))],
        });
      } else if (interaction.isChatInputCommand() && interaction.commandName === 'secret') {
        await interaction.reply({ content: 'for your eyes only', flags: MessageFlags.Ephemeral });
      } else if (interaction.isChatInputCommand() && interaction.commandName === 'feedback') {
        await interaction.showModal({ custom_id: 'feedback-form', title: 'Feedback', components: [{ type: 1, components: [{ type: 4, custom_id: 'text', label: 'Your feedback', style: 2 }] }] });
      } else if (interaction.isModalSubmit()) {
        await interaction.reply(`feedback received: ${interaction.fields.getTextInputValue('text')}`);
      } else if (interaction.isButton()) {
        await interaction.update({ content: `rerolled by ${interaction.user.username}`, files: [new AttachmentBuilder(makePng(24, 24, [10, 200, 10]), { name: 'reroll.png' })], attachments: [], components: [] });
      }
    });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM!, // set whenever this suite runs (see `skip`)
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  after(async () => {
    await browser?.close();
    await client?.destroy();
    await emulator?.stop();
  });

  it('runs a command typed by a chosen user in a chosen channel, shows live edits and the image, and a click updates it', async () => {
    const { guild, general, member, admin } = firstGuild(emulator);
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${emulator.url}/`);
    await page.waitForSelector('body[data-ready="true"]');
    await page.waitForSelector('[data-testid="commands"] code');
    assert.match(await page.textContent('[data-testid="bot-status"]') ?? '', /online/);
    await page.selectOption('[data-testid="user"]', member.id);
    await page.selectOption('[data-testid="channel"]', `${guild.id}:${general.id}`);

    await page.fill('[data-testid="input"]', '/draw a red fox steps:3');
    await page.press('[data-testid="input"]', 'Enter');
    // A progress edit is seen while the bot is still working (the page updates live).
    await page.waitForSelector('[data-testid="content"]:text-matches("drawing a red fox: [123]/3")', { timeout: 15_000 });
    await page.waitForSelector('[data-testid="content"]:text("done: a red fox")', { timeout: 15_000 });
    const image = page.locator('img[data-testid="attachment"][alt="final.png"]');
    await image.waitFor();
    // Runs in the page (a string, as this project's TypeScript has no DOM types).
    await page.waitForFunction(`(() => { const img = document.querySelector('img[alt="final.png"]'); return img !== null && img.complete && img.naturalWidth === 48 && img.naturalHeight === 32; })()`);
    // Mentions read as in Discord's client.
    assert.ok(await page.locator(`[data-testid="content"]:text("done: a red fox for @${member.globalName ?? member.username}")`).count() === 1);
    const invocations = [...emulator.interactions.records.values()].filter((r) => r.name === 'draw');
    assert.equal(invocations.length, 1);
    assert.equal(invocations[0]!.userId, member.id);
    assert.equal(invocations[0]!.channelId, general.id);
    assert.deepEqual((invocations[0]!.payload.data as { options: unknown }).options, [
      { name: 'prompt', type: 3, value: 'a red fox' },
      { name: 'steps', type: 4, value: 3 },
    ]);

    await page.click('button[data-custom-id="reroll"]');
    await page.waitForSelector(`[data-testid="content"]:text("rerolled by ${member.username}")`, { timeout: 15_000 });
    await page.waitForFunction(`(() => { const img = document.querySelector('img[alt="reroll.png"]'); return img !== null && img.complete && img.naturalWidth === 24; })()`);
    assert.equal(await page.locator('button[data-custom-id="reroll"]').count(), 0);

    // Ephemeral answers show for the user who asked, not for someone else.
    await page.fill('[data-testid="input"]', '/secret');
    await page.press('[data-testid="input"]', 'Enter');
    await page.waitForSelector('.message.ephemeral [data-testid="content"]:text("for your eyes only")', { timeout: 15_000 });
    await page.selectOption('[data-testid="user"]', admin.id);
    await page.waitForFunction(`!document.body.textContent.includes('for your eyes only')`);

    // A form the bot opens can be filled in and submitted.
    await page.fill('[data-testid="input"]', '/feedback');
    await page.press('[data-testid="input"]', 'Enter');
    await page.waitForSelector('[data-testid="modal"] textarea[name="text"]', { timeout: 15_000 });
    await page.fill('[data-testid="modal"] textarea[name="text"]', 'lovely foxes');
    await page.click('[data-testid="modal"] button[type="submit"]');
    await page.waitForSelector('[data-testid="content"]:text("feedback received: lovely foxes")', { timeout: 15_000 });
    assert.equal(await page.locator('[data-testid="modal"]').count(), 0);

    // What Discord's client would refuse is explained, not sent.
    await page.fill('[data-testid="input"]', '/draw prompt:x steps:9');
    await page.press('[data-testid="input"]', 'Enter');
    await page.waitForSelector('[data-testid="error"]:text-matches("steps.*at most 4")');
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  it('offers "Restart bot" when a bot process is attached, and it goes through /_sandbox/bot/restart', async () => {
    const restarts: boolean[] = [];
    emulator.attachBot({ restart: async ({ hard }) => void restarts.push(hard), status: () => ({ running: true }) });
    const page = await browser.newPage();
    try {
      await page.goto(`${emulator.url}/`);
      await page.waitForSelector('body[data-ready="true"]');
      await page.waitForSelector('[data-testid="restart"]:not([hidden])');
      await page.click('[data-testid="restart"]');
      await page.waitForSelector('[data-testid="restart"]:text("Restart bot"):not([disabled])');
      assert.deepEqual(restarts, [false]);
    } finally {
      emulator.attachBot(null);
      await page.close();
    }
  });
});
