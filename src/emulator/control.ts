import type { IncomingMessage, ServerResponse } from 'node:http';
import { SandboxRequestError } from './errors.js';
import type { DiscordEmulator, FaultRequest } from './emulator.js';
import type { InvokeRequest } from './commands.js';
import type { ClickRequest } from './interactions.js';
import { contentTypeFor, sniffImage } from './media.js';
import { drain, sendJson, splitPath } from './router.js';
import { isObject, type JsonObject } from './validation.js';

/**
 * The control API under `/_sandbox` (not Discord's): it plays the human users and lets tests observe everything.
 * Errors are `{error: "<reason>"}` with 400 (refused), 404 (unknown id) or 409/503 (no bot attached).
 */
export async function handleControlRequest(emulator: DiscordEmulator, req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
  const method = (req.method ?? 'GET').toUpperCase();
  // The control API has no credentials; it answers only this machine's own pages and tools. A foreign Origin (a web
  // page elsewhere posting here) or Host (DNS rebinding) is refused.
  const host = req.headers.host ?? '';
  const origin = req.headers.origin;
  const local = (value: string) => /^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(value);
  if (!local(host) || (origin !== undefined && origin !== 'null' && !local(origin.replace(/^https?:\/\//, '')))) {
    drain(req);
    return sendJson(res, 403, { error: 'the control API only answers requests from this machine' });
  }
  const segments = splitPath(path);
  const route = `${method} /${segments.map((s, i) => (i > 0 && /^\d+$/.test(s) ? ':id' : s)).join('/')}`;
  try {
    switch (route) {
      case 'GET /state':
        return sendJson(res, 200, emulator.stateView());
      case 'GET /commands':
        return sendJson(res, 200, emulator.commands.all());
      case 'POST /commands': {
        const body = (await readJson(req)) as unknown as InvokeRequest;
        return sendJson(res, 200, emulator.invokeCommand(body));
      }
      case 'POST /autocomplete': {
        const body = (await readJson(req)) as unknown as InvokeRequest & { focused: string };
        const record = emulator.interactions.autocomplete(body);
        return sendJson(res, 200, { interaction_id: record.id, delivered: record.delivered > 0 });
      }
      case 'POST /clicks': {
        const body = (await readJson(req)) as unknown as ClickRequest;
        return sendJson(res, 200, emulator.click(body));
      }
      case 'POST /modals': {
        const body = await readJson(req);
        const values = isObject(body.values) ? Object.fromEntries(Object.entries(body.values).map(([k, v]) => [k, String(v)])) : {};
        const record = emulator.interactions.submitModal(String(body.interaction_id ?? ''), String(body.user_id ?? ''), values);
        return sendJson(res, 200, { interaction_id: record.id, delivered: record.delivered > 0 });
      }
      case 'POST /attachments': {
        const body = await readJson(req);
        if (typeof body.filename !== 'string' || typeof body.content_base64 !== 'string') throw new SandboxRequestError('filename and content_base64 are required');
        const data = Buffer.from(body.content_base64, 'base64');
        const image = sniffImage(data);
        const id = emulator.ids.next();
        const attachment: JsonObject = {
          id,
          filename: body.filename,
          size: data.length,
          content_type: contentTypeFor(body.filename, data, typeof body.content_type === 'string' ? body.content_type : undefined),
          ephemeral: true,
        };
        if (image) {
          attachment.width = image.width;
          attachment.height = image.height;
        }
        // Stored like any other upload so the bot can download it from the CDN.
        emulator.messages.attachments.set(id, { id, channelId: '0', filename: body.filename, contentType: String(attachment.content_type), size: data.length, width: image?.width ?? null, height: image?.height ?? null, description: null, title: null, ephemeral: true, data });
        const url = `${emulator.cdnBase}/ephemeral-attachments/0/${id}/${encodeURIComponent(body.filename)}`;
        attachment.url = url;
        attachment.proxy_url = url;
        emulator.interactions.optionUploads.set(id, attachment);
        return sendJson(res, 200, attachment);
      }
      case 'POST /members': {
        const body = await readJson(req);
        return sendJson(res, 200, emulator.updateMember(body as unknown as { guild_id: string; user_id: string; admin?: boolean; role_ids?: string[] }));
      }
      case 'POST /roles': {
        const body = await readJson(req);
        return sendJson(res, 200, emulator.createRole(body as unknown as { guild_id: string; name: string; permissions?: string }));
      }
      case 'POST /channels/:id': {
        const body = await readJson(req);
        return sendJson(res, 200, emulator.updateChannel(segments[1] ?? '', body as { name?: string; nsfw?: boolean }));
      }
      case 'GET /interactions': {
        const userId = query.get('user_id');
        const views = [...emulator.interactions.records.values()]
          .filter((r) => !userId || r.userId === userId)
          .slice(-Number(query.get('limit') ?? 50))
          .map((r) => emulator.interaction(r.id));
        return sendJson(res, 200, views);
      }
      case 'GET /interactions/:id': {
        const view = emulator.interaction(segments[1] ?? '');
        if (!view) return sendJson(res, 404, { error: `no interaction ${segments[1]}` });
        return sendJson(res, 200, view);
      }
      case 'GET /channels/:id/messages': {
        const channelId = segments[1] ?? '';
        if (!emulator.state.channels.has(channelId)) return sendJson(res, 404, { error: `no channel ${channelId}` });
        return sendJson(res, 200, emulator.channelMessages(channelId));
      }
      case 'GET /messages/:id': {
        const message = emulator.messages.get(segments[1] ?? '');
        if (!message) return sendJson(res, 404, { error: `no message ${segments[1]}` });
        return sendJson(res, 200, emulator.messages.sandboxMessage(message));
      }
      case 'GET /log':
        return sendJson(res, 200, emulator.requestLog);
      case 'POST /faults': {
        const body = (await readJson(req)) as unknown as FaultRequest;
        return sendJson(res, 200, await emulator.injectFault(body));
      }
      case 'GET /bot': {
        const controller = emulator.botController;
        return sendJson(res, 200, { attached: controller !== null, connected: emulator.gateway.liveSessions().length > 0, ready_count: emulator.botReadyCount, ...(controller?.status() ?? {}) });
      }
      case 'POST /bot/restart': {
        const body = await readJson(req);
        const controller = emulator.botController;
        if (!controller) return sendJson(res, 409, { error: 'no bot process is attached to this emulator' });
        const started = Date.now();
        try {
          await controller.restart({ hard: body.hard === true });
        } catch (error) {
          return sendJson(res, 503, { error: `the bot did not come back: ${(error as Error).message}` });
        }
        return sendJson(res, 200, { ready: true, restart_ms: Date.now() - started, ...controller.status() });
      }
      case 'GET /events':
        return streamEvents(emulator, req, res);
      default: {
        const extra = emulator.controlRoute(route);
        if (extra) {
          if (method !== 'POST') drain(req);
          const body = method === 'POST' ? await readJson(req) : {};
          const ids = segments.filter((s, i) => i > 0 && /^\d+$/.test(s)).map(Number);
          const answer = await extra({ ids, body });
          return sendJson(res, answer.status, answer.body);
        }
        drain(req);
        return sendJson(res, 404, { error: `no control route ${method} ${path}` });
      }
    }
  } catch (error) {
    drain(req);
    if (error instanceof SandboxRequestError) return sendJson(res, error.status, { error: error.message });
    throw error;
  }
}

async function readJson(req: IncomingMessage): Promise<JsonObject> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 64 * 1024 * 1024) throw new SandboxRequestError('body too large', 413);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SandboxRequestError('body is not valid JSON');
  }
  if (!isObject(parsed)) throw new SandboxRequestError('body must be a JSON object');
  return parsed;
}

/** Server-sent events: one `change` event (throttled) whenever something observable changed. */
function streamEvents(emulator: DiscordEmulator, req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
  res.write('retry: 1000\n\n');
  let pending: NodeJS.Timeout | null = null;
  let sequence = 0;
  const onChange = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      sequence += 1;
      res.write(`event: change\ndata: ${sequence}\n\n`);
    }, 100);
  };
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  emulator.on('change', onChange);
  req.on('close', () => {
    emulator.off('change', onChange);
    clearInterval(keepAlive);
    if (pending) clearTimeout(pending);
  });
}
