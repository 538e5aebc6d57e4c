// The sandbox page: plays a Discord user against the local emulator through the control API (/_sandbox).
// Plain browser JavaScript, no build step.
'use strict';

const api = (path, options = {}) =>
  fetch(`/_sandbox${path}`, {
    method: options.method || 'GET',
    headers: options.body ? { 'Content-Type': 'application/json' } : {},
    body: options.body ? JSON.stringify(options.body) : undefined,
  }).then(async (response) => {
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
    return data;
  });

const $ = (id) => document.getElementById(id);
const view = {
  state: null, commands: [], messages: [], interactions: [], lastRender: '', submittedModals: new Set(), modalForms: new Map(),
  /** Keys of the timeline items rendered last time, to tell a new message from an edit. */
  seenItems: new Set(),
  /** True while the view should stay at the newest message (images that finish loading make it taller). */
  followNewest: true,
};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function selectedUser() {
  return $('user').value;
}
function selectedChannel() {
  const [guildId, channelId] = ($('channel').value || ':').split(':');
  return { guildId, channelId };
}
function userName(id) {
  if (view.state && id === view.state.application_id) return view.state.bot_user.username;
  const user = view.state && view.state.users.find((u) => u.id === id);
  return user ? user.global_name || user.username : id;
}

// ------------------------------------------------------------------------------------------------------------
// Setup

async function loadState() {
  view.state = await api('/state');
  const users = $('user');
  const channels = $('channel');
  const previousUser = users.value;
  const previousChannel = channels.value;
  users.replaceChildren(...view.state.users.map((u) => el('option', { value: u.id }, `${u.global_name || u.username}${u.admin ? ' — admin' : ''}`)));
  channels.replaceChildren(
    ...view.state.guilds.map((g) =>
      el('optgroup', { label: g.name }, ...g.channels.map((c) => el('option', { value: `${g.id}:${c.id}` }, `#${c.name}${c.nsfw ? ' (NSFW)' : ''}`))),
    ),
  );
  if (previousUser) users.value = previousUser;
  if (previousChannel) channels.value = previousChannel;
  updateStatus();
}

function updateStatus() {
  const status = $('bot-status');
  const connected = view.state && view.state.bot_connected;
  status.textContent = connected ? `${view.state.bot_user.username} is online` : 'the bot is offline';
  status.className = `status ${connected ? 'online' : 'offline'}`;
  updateShard();
}

/** Which gateway shard serves the selected channel's guild (Discord routes its events to that shard only). */
function updateShard() {
  const line = $('shard');
  const shards = (view.state && view.state.shards) || [];
  const { guildId } = selectedChannel();
  const shard = shards.find((s) => s.guild_ids.includes(guildId));
  if (!shard || shards.length < 2) {
    line.textContent = shards.length === 1 ? 'one shard serves every guild' : '';
    return;
  }
  line.textContent = `served by shard ${shard.id} of ${shards.length} — ${shard.connected ? 'connected' : 'offline'}`;
  line.dataset.shard = String(shard.id);
  line.dataset.connected = String(shard.connected);
}

// ------------------------------------------------------------------------------------------------------------
// Commands: what is registered, and turning "/imagine a cat steps:20" into an invocation

function availableCommands() {
  const { guildId } = selectedChannel();
  const chatInput = view.commands.filter((c) => c.type === 1 && (!c.guild_id || c.guild_id === guildId));
  // A guild command shadows a global command with the same name.
  const byName = new Map();
  for (const command of chatInput) if (!byName.has(command.name) || command.guild_id) byName.set(command.name, command);
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function describeOption(option) {
  const types = { 3: 'text', 4: 'integer', 5: 'true/false', 6: 'user', 7: 'channel', 8: 'role', 9: 'user/role', 10: 'number', 11: 'file' };
  let type = types[option.type] || 'value';
  if (option.choices && option.choices.length) type = option.choices.map((c) => c.value).join('|');
  const range = option.min_value !== undefined || option.max_value !== undefined ? ` ${option.min_value ?? ''}–${option.max_value ?? ''}` : '';
  const text = `${option.name}:<${type}${range}>`;
  return option.required ? text : `[${text}]`;
}

function usage(command) {
  const options = command.options || [];
  const subs = options.filter((o) => o.type === 1 || o.type === 2);
  if (subs.length) {
    return subs.flatMap((s) => (s.type === 2 ? (s.options || []).map((inner) => `/${command.name} ${s.name} ${inner.name} ${(inner.options || []).map(describeOption).join(' ')}`) : [`/${command.name} ${s.name} ${(s.options || []).map(describeOption).join(' ')}`]));
  }
  return [`/${command.name} ${options.map(describeOption).join(' ')}`];
}

function renderCommands() {
  const list = $('commands');
  const commands = availableCommands();
  if (!commands.length) return list.replaceChildren(el('li', { className: 'muted' }, 'none registered yet'));
  list.replaceChildren(
    ...commands.flatMap((command) =>
      usage(command).map((line) =>
        el('li', { title: command.description, onclick: () => pickCommand(line) }, el('code', {}, line.trim())),
      ),
    ),
  );
}

/** Clicking a usage line starts the command in the composer: "/name [subcommand] ". */
function pickCommand(line) {
  const words = line.trim().split(' ');
  const head = [];
  for (const word of words) {
    if (word.includes(':') || word.startsWith('[')) break;
    head.push(word);
  }
  $('input').value = `${head.join(' ')} `;
  $('input').focus();
  updateHint();
}

/** Parses the composer text like Discord's client fills options: `name:value` pairs, free text → first required text option. */
function parseInvocation(text) {
  const trimmed = text.trim();
  if (!trimmed.startsWith('/')) throw new Error('type a command, starting with /');
  const words = trimmed.slice(1).split(/\s+/);
  const name = words.shift();
  const command = availableCommands().find((c) => c.name === name);
  if (!command) throw new Error(`there is no /${name} here (registered: ${availableCommands().map((c) => `/${c.name}`).join(', ') || 'none'})`);
  let options = command.options || [];
  const subcommand = [];
  let rest = trimmed.slice(1 + name.length).trim();
  while (options.some((o) => o.type === 1 || o.type === 2)) {
    const next = rest.split(/\s+/)[0];
    const sub = options.find((o) => (o.type === 1 || o.type === 2) && o.name === next);
    if (!sub) throw new Error(`/${name} needs a subcommand: ${options.filter((o) => o.type <= 2).map((o) => o.name).join(', ')}`);
    subcommand.push(sub.name);
    options = sub.options || [];
    rest = rest.slice(next.length).trim();
  }
  const values = {};
  const names = options.map((o) => o.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const marker = names.length ? new RegExp(`(?:^|\\s)(${names.join('|')}):`, 'g') : null;
  const found = [];
  if (marker) for (let match = marker.exec(rest); match; match = marker.exec(rest)) found.push({ name: match[1], start: match.index, valueStart: match.index + match[0].length });
  const free = (found.length ? rest.slice(0, found[0].start) : rest).trim();
  found.forEach((item, index) => {
    let value = rest.slice(item.valueStart, index + 1 < found.length ? found[index + 1].start : rest.length).trim();
    if (/^".*"$/.test(value)) value = value.slice(1, -1);
    values[item.name] = value;
  });
  if (free) {
    const target = options.find((o) => o.type === 3 && o.required && !(o.name in values)) || options.find((o) => o.type === 3 && !(o.name in values));
    if (!target) throw new Error(`what is "${free}"? use name:value for the options of /${name}`);
    values[target.name] = free;
  }
  for (const option of options) {
    if (!(option.name in values)) continue;
    // Users can be given by name; the emulator wants ids.
    if (option.type === 6 || option.type === 9) {
      const wanted = values[option.name].replace(/^@/, '');
      const user = view.state.users.find((u) => u.username === wanted || u.global_name === wanted || u.id === wanted);
      if (user) values[option.name] = user.id;
    }
    if (option.type === 7) {
      const wanted = values[option.name].replace(/^#/, '');
      for (const guild of view.state.guilds) {
        const channel = guild.channels.find((c) => c.name === wanted || c.id === wanted);
        if (channel) values[option.name] = channel.id;
      }
    }
  }
  return { name, subcommand: subcommand.join(' ') || undefined, options: values };
}

function updateHint() {
  const text = $('input').value.trim();
  const hint = $('hint');
  if (!text.startsWith('/')) return (hint.textContent = availableCommands().length ? `Commands: ${availableCommands().map((c) => `/${c.name}`).join(' ')}` : '');
  const name = text.slice(1).split(/\s+/)[0];
  const command = availableCommands().find((c) => c.name === name);
  hint.textContent = command ? `${usage(command).join('   ·   ')} — ${command.description}` : availableCommands().filter((c) => c.name.startsWith(name)).map((c) => usage(c)[0]).join('   ·   ');
}

async function send(event) {
  event.preventDefault();
  const error = $('error');
  error.textContent = '';
  let parsed;
  try {
    parsed = parseInvocation($('input').value);
  } catch (problem) {
    error.textContent = problem.message;
    return;
  }
  const { guildId, channelId } = selectedChannel();
  try {
    await api('/commands', { method: 'POST', body: { user_id: selectedUser(), guild_id: guildId, channel_id: channelId, name: parsed.name, subcommand: parsed.subcommand, options: parsed.options, bypass_permissions: $('bypass').checked || undefined } });
    $('input').value = '';
    updateHint();
  } catch (problem) {
    error.textContent = `Discord would not send that: ${problem.message}`;
  }
  await refresh();
}

async function click(message, customId, values) {
  $('error').textContent = '';
  try {
    await api('/clicks', { method: 'POST', body: { user_id: selectedUser(), message_id: message.id, custom_id: customId, values } });
  } catch (problem) {
    $('error').textContent = `Click refused: ${problem.message}`;
  }
  await refresh();
}

// ------------------------------------------------------------------------------------------------------------
// Rendering messages

function renderComponents(message) {
  const rows = [];
  for (const row of message.components || []) {
    if (row.type !== 1) continue;
    rows.push(
      el(
        'div',
        { className: 'row' },
        ...(row.components || []).map((component) => {
          if (component.type === 2 && component.style === 5) return el('a', { className: 'link-button', href: component.url, target: '_blank', rel: 'noopener' }, component.label || component.url);
          if (component.type === 2) {
            const label = `${component.emoji && component.emoji.name ? `${component.emoji.name} ` : ''}${component.label || ''}`;
            return el('button', { type: 'button', className: `style-${component.style}`, disabled: component.disabled === true, 'data-custom-id': component.custom_id, onclick: () => click(message, component.custom_id) }, label);
          }
          if (component.type === 3) {
            const select = el('select', { 'data-custom-id': component.custom_id, disabled: component.disabled === true }, el('option', { value: '' }, component.placeholder || 'Choose…'), ...(component.options || []).map((o) => el('option', { value: o.value }, o.label)));
            select.addEventListener('change', () => select.value && click(message, component.custom_id, [select.value]));
            return select;
          }
          return el('span', { className: 'muted' }, `[component type ${component.type}]`);
        }),
      ),
    );
  }
  return rows;
}

function renderEmbed(embed) {
  return el(
    'div',
    { className: 'embed', style: embed.color ? `border-left-color: #${embed.color.toString(16).padStart(6, '0')}` : undefined },
    embed.author && embed.author.name ? el('div', { className: 'meta' }, embed.author.name) : null,
    embed.title ? el('div', { className: 'title' }, embed.title) : null,
    embed.description ? el('div', { className: 'content' }, readable(embed.description)) : null,
    ...fieldRows(embed.fields || []).map((row) =>
      el(
        'div',
        { className: 'field-row', 'data-testid': 'field-row', style: `grid-template-columns: repeat(${row.length}, minmax(0, 1fr))` },
        ...row.map((f) => el('div', { className: 'field', 'data-testid': 'field' }, el('div', { className: 'field-name' }, f.name), el('div', { className: 'content' }, readable(f.value)))),
      ),
    ),
    embed.image && embed.image.url ? el('img', { src: embed.image.url, alt: 'embed image' }) : null,
    embed.thumbnail && embed.thumbnail.url ? el('img', { src: embed.thumbnail.url, alt: 'embed thumbnail' }) : null,
    embed.footer && embed.footer.text ? el('div', { className: 'meta' }, embed.footer.text) : null,
  );
}

/**
 * Embed fields laid out as Discord's client does: consecutive inline fields share a row, up to 3 per row; a field
 * that is not inline takes a row of its own.
 */
function fieldRows(fields) {
  const rows = [];
  let inlineRow = null;
  for (const field of fields) {
    if (field.inline && inlineRow && inlineRow.length < 3) {
      inlineRow.push(field);
      continue;
    }
    const row = [field];
    rows.push(row);
    inlineRow = field.inline ? row : null;
  }
  return rows;
}

// Discord's timestamp markup <t:unix:style>, in the reader's locale and time zone as its client shows it.
const TIMESTAMP_FORMATS = {
  t: { hour: 'numeric', minute: '2-digit' },
  T: { hour: 'numeric', minute: '2-digit', second: '2-digit' },
  d: { day: '2-digit', month: '2-digit', year: 'numeric' },
  D: { day: 'numeric', month: 'long', year: 'numeric' },
  f: { day: 'numeric', month: 'long', year: 'numeric', hour: 'numeric', minute: '2-digit' },
  F: { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric', hour: 'numeric', minute: '2-digit' },
};
const RELATIVE_UNITS = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]];

/** "in 5 minutes", "2 hours ago": the largest unit that fits, as Discord's client words it. */
function relativeTime(unixSeconds, nowMs = Date.now()) {
  const seconds = unixSeconds - nowMs / 1000;
  const [unit, size] = RELATIVE_UNITS.find(([, length]) => Math.abs(seconds) >= length) || RELATIVE_UNITS[RELATIVE_UNITS.length - 1];
  return new Intl.RelativeTimeFormat(undefined, { numeric: 'always' }).format(Math.round(seconds / size), unit);
}

function formatTimestamp(unixSeconds, style) {
  if (style === 'R') return relativeTime(unixSeconds);
  return new Intl.DateTimeFormat(undefined, TIMESTAMP_FORMATS[style] || TIMESTAMP_FORMATS.f).format(new Date(unixSeconds * 1000));
}

function timestampNode(unixSeconds, style) {
  const date = new Date(unixSeconds * 1000);
  return el('time', { datetime: date.toISOString(), title: formatTimestamp(unixSeconds, 'F'), 'data-style': style, 'data-unix': unixSeconds, 'data-testid': 'timestamp' }, formatTimestamp(unixSeconds, style));
}

/** Relative timestamps move with the clock ("in 10 minutes" becomes "in 9 minutes") without a re-render. */
function tickRelativeTimes() {
  for (const node of document.querySelectorAll('time[data-style="R"]')) node.textContent = relativeTime(Number(node.dataset.unix));
}

/** Text as Discord's client shows it: mentions by name, and <t:…> timestamps as dates (nodes, to append). */
function readable(text) {
  const nodes = [];
  const markup = /<t:(-?\d{1,13})(?::([tTdDfFR]))?>/g;
  let last = 0;
  for (let match = markup.exec(String(text)); match; match = markup.exec(String(text))) {
    nodes.push(readableMentions(String(text).slice(last, match.index)), timestampNode(Number(match[1]), match[2] || 'f'));
    last = match.index + match[0].length;
  }
  nodes.push(readableMentions(String(text).slice(last)));
  return nodes.filter((node) => node !== '');
}

/** Mentions as Discord's client shows them: <@id> → @name, <#id> → #channel, <@&id> → @role. */
function readableMentions(text) {
  return String(text)
    .replace(/<@!?(\d+)>/g, (_, id) => `@${userName(id)}`)
    .replace(/<#(\d+)>/g, (whole, id) => {
      for (const guild of (view.state && view.state.guilds) || []) {
        const channel = guild.channels.find((c) => c.id === id);
        if (channel) return `#${channel.name}`;
      }
      return whole;
    })
    .replace(/<@&(\d+)>/g, '@role');
}

function renderMessage(message) {
  const classes = ['message'];
  if (message.ephemeral) classes.push('ephemeral');
  const node = el(
    'div',
    { className: classes.join(' '), 'data-message-id': message.id, 'data-testid': 'message' },
    message.interaction_name ? el('div', { className: 'meta' }, `${userName(message.interaction_user_id)} used /${message.interaction_name}`) : null,
    el('div', { className: 'meta' }, el('span', { className: 'author' }, userName(message.author_id)), el('span', { className: 'bot-tag' }, 'APP'), new Date(message.created_at).toLocaleTimeString(), message.edited_at ? ' (edited)' : ''),
    message.loading ? el('div', { className: 'thinking', 'data-testid': 'thinking' }, `${userName(message.author_id)} is thinking…`) : null,
    message.content ? el('div', { className: 'content', 'data-testid': 'content' }, readable(message.content)) : null,
    ...(message.embeds || []).map(renderEmbed),
    el(
      'div',
      { className: 'attachments' },
      ...(message.attachments || []).map((a) => (a.content_type.startsWith('image/') ? el('img', { src: a.url, alt: a.filename, title: `${a.filename} — ${a.width}×${a.height}, ${a.size} bytes`, 'data-testid': 'attachment' }) : el('a', { className: 'file', href: a.url, download: a.filename }, `📎 ${a.filename} (${a.size} bytes)`))),
    ),
    ...renderComponents(message),
    message.ephemeral ? el('div', { className: 'ephemeral-note' }, 'Only you can see this') : null,
  );
  return node;
}

function timeline() {
  const { channelId } = selectedChannel();
  const user = selectedUser();
  const items = view.messages.map((m) => ({ at: m.created_at, message: m }));
  for (const interaction of view.interactions) {
    if (interaction.channel_id !== channelId || interaction.user_id !== user) continue;
    const own = [interaction.original, ...interaction.followups].filter((m) => m && m.ephemeral);
    for (const message of own) if (!items.some((i) => i.message && i.message.id === message.id)) items.push({ at: message.created_at, message });
    if (interaction.failed) items.push({ at: interaction.created_at, system: `${interaction.name ? `/${interaction.name}` : 'The button'} — The application did not respond` });
    if (interaction.modal && interaction.ack_type === 9 && !view.submittedModals.has(interaction.id)) items.push({ at: interaction.created_at, modal: interaction });
  }
  return items.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}

/** A form the bot opened (callback type 9): text inputs and a submit button. */
function renderModal(interaction) {
  // Re-renders must not wipe what the person is typing: the form node is kept while it is open.
  if (view.modalForms.has(interaction.id)) return view.modalForms.get(interaction.id);
  const inputs = [];
  const rows = (interaction.modal.components || []).flatMap((row) => (row.type === 1 ? row.components || [] : row.component ? [row.component] : []));
  const fields = rows.filter((c) => c.type === 4).map((input) => {
    const field = input.style === 2 ? el('textarea', { name: input.custom_id, rows: 3, placeholder: input.placeholder }) : el('input', { name: input.custom_id, placeholder: input.placeholder });
    if (input.value) field.value = input.value;
    inputs.push(field);
    return el('label', { className: 'modal-field' }, el('span', {}, input.label || input.custom_id), field);
  });
  const form = el('form', { className: 'message modal', 'data-testid': 'modal' }, el('div', { className: 'title' }, interaction.modal.title), ...fields, el('button', { type: 'submit' }, 'Submit'));
  view.modalForms.set(interaction.id, form);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(inputs.map((field) => [field.name, field.value]));
    try {
      await api('/modals', { method: 'POST', body: { interaction_id: interaction.id, user_id: selectedUser(), values } });
      view.submittedModals.add(interaction.id);
    } catch (problem) {
      $('error').textContent = `Form refused: ${problem.message}`;
    }
    await refresh();
  });
  return form;
}

/** Whether the reader is at the newest message: only then do edits and loading images keep the view at the bottom. */
function atBottom(container) {
  return container.scrollHeight - container.scrollTop - container.clientHeight < 80;
}

function scrollToNewest() {
  const container = $('messages');
  container.scrollTop = container.scrollHeight;
  view.followNewest = true;
}

function renderMessages() {
  const container = $('messages');
  const items = timeline();
  const signature = JSON.stringify(items);
  if (signature === view.lastRender) return;
  view.lastRender = signature;
  // A message that was not there before (a result, an answer) is brought into view, as Discord's client does for
  // the channel one reads at the bottom; a reader who scrolled up to older messages is left there for mere edits.
  const keys = items.map((item) => (item.message ? item.message.id : item.modal ? `modal:${item.modal.id}` : `system:${item.at}`));
  const arrived = keys.some((key) => !view.seenItems.has(key));
  view.seenItems = new Set(keys);
  const follow = atBottom(container) || arrived || view.followNewest;
  container.replaceChildren(
    ...(items.length ? items.map((item) => (item.message ? renderMessage(item.message) : item.modal ? renderModal(item.modal) : el('div', { className: 'message system', 'data-testid': 'system' }, item.system))) : [el('div', { className: 'muted' }, 'No messages yet. Type a command below.')]),
  );
  if (follow) scrollToNewest();
}

// ------------------------------------------------------------------------------------------------------------
// Live updates: an event stream from the emulator, with polling as a fallback

let refreshing = null;
let again = false;
async function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const { channelId } = selectedChannel();
      const [state, commands, messages, interactions] = await Promise.all([
        api('/state'),
        api('/commands'),
        channelId ? api(`/channels/${channelId}/messages`) : [],
        selectedUser() ? api(`/interactions?user_id=${selectedUser()}&limit=30`) : [],
      ]);
      view.state = state;
      updateStatus();
      const commandsChanged = JSON.stringify(commands) !== JSON.stringify(view.commands);
      view.commands = commands;
      if (commandsChanged) {
        renderCommands();
        updateHint();
      }
      view.messages = messages;
      view.interactions = interactions;
      renderMessages();
    } catch (problem) {
      $('bot-status').textContent = `sandbox unreachable: ${problem.message}`;
      $('bot-status').className = 'status offline';
    } finally {
      refreshing = null;
      if (again) {
        again = false;
        void refresh();
      }
    }
  })();
  return refreshing;
}

async function restartBot() {
  const button = $('restart');
  button.disabled = true;
  button.textContent = 'Restarting…';
  try {
    await api('/bot/restart', { method: 'POST', body: { hard: false } });
  } catch (problem) {
    $('error').textContent = `Restart failed: ${problem.message}`;
  } finally {
    button.disabled = false;
    button.textContent = 'Restart bot';
    await refresh();
  }
}

async function main() {
  await loadState();
  api('/bot').then((bot) => { $('restart').hidden = !bot.attached; }).catch(() => undefined);
  $('restart').addEventListener('click', restartBot);
  $('composer').addEventListener('submit', send);
  const messages = $('messages');
  // Scrolling up to read stops following; scrolling back to the bottom resumes it.
  messages.addEventListener('scroll', () => { view.followNewest = atBottom(messages); });
  // An image that loads after its message was placed pushes the newest message down: keep it in view.
  messages.addEventListener('load', () => { if (view.followNewest) messages.scrollTop = messages.scrollHeight; }, true);
  $('input').addEventListener('input', updateHint);
  $('user').addEventListener('change', () => { view.lastRender = ''; view.followNewest = true; void refresh(); });
  $('channel').addEventListener('change', () => { view.lastRender = ''; view.followNewest = true; renderCommands(); updateShard(); void refresh(); });
  await refresh();
  if (window.EventSource) {
    const events = new EventSource('/_sandbox/events');
    events.addEventListener('change', () => void refresh());
  }
  // Deadlines (an interaction that got no answer in 3 s) change without an event; a slow poll catches those.
  setInterval(() => {
    void refresh();
    tickRelativeTimes();
  }, 1500);
  document.body.dataset.ready = 'true';
}

void main();
