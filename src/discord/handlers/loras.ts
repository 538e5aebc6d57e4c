/**
 * `/imagine-loras`: the LoRA files in model.loraDir with their size and A1111's short hash, privately. The bot reads
 * the folder it is configured with; workers of the Redis backend are expected to share it (docs/lora.md).
 */
import { MessageFlags, type ChatInputCommandInteraction } from 'discord.js';
import type { HandlerContext } from './context.js';

/** Discord's limit on a message's content. */
const MAX_CONTENT = 2000;

export async function handleLoras(interaction: ChatInputCommandInteraction, context: HandlerContext): Promise<void> {
  await interaction.deferReply({ flags: MessageFlags.Ephemeral });
  const loras = await context.loras();
  if (loras.length === 0) {
    await interaction.editReply('No LoRAs are installed.');
    return;
  }
  const header = `🧩 ${loras.length} LoRA${loras.length === 1 ? '' : 's'} — write \`<lora:name:0.8>\` in a prompt:`;
  const lines = [header];
  for (const [index, lora] of loras.entries()) {
    const line = `\`${lora.name}\` · ${(lora.bytes / 1_048_576).toFixed(1)} MB · ${lora.hash}`;
    // Keep room for the "and N more" line.
    if ([...lines, line].join('\n').length > MAX_CONTENT - 40) {
      lines.push(`… and ${loras.length - index} more`);
      break;
    }
    lines.push(line);
  }
  await interaction.editReply(lines.join('\n'));
}
