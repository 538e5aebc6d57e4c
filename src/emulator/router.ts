import type { IncomingMessage, ServerResponse } from 'node:http';

/** A tiny path matcher: `/channels/:channel_id/messages` style templates, segments percent-decoded. */
export interface RouteMatch<T> {
  route: T;
  params: Record<string, string>;
}

export interface RouteDefinition {
  method: string;
  template: string;
}

export function splitPath(path: string): string[] {
  return path
    .split('/')
    .filter((s) => s.length > 0)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
}

export function matchRoute<T extends RouteDefinition>(routes: T[], method: string, path: string): { match: RouteMatch<T> | null; pathExists: boolean } {
  const segments = splitPath(path);
  let pathExists = false;
  for (const route of routes) {
    const parts = route.template.split('/').filter((s) => s.length > 0);
    if (parts.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < parts.length; i += 1) {
      const part = parts[i] as string;
      const segment = segments[i] as string;
      if (part.startsWith(':')) params[part.slice(1)] = segment;
      else if (part !== segment) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    pathExists = true;
    if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { match: { route, params }, pathExists };
  }
  return { match: null, pathExists };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** 204 with neither body nor JSON content type: discord.js would try to parse an empty JSON body otherwise. */
export function sendNoContent(res: ServerResponse, headers: Record<string, string> = {}): void {
  res.writeHead(204, headers);
  res.end();
}

/** Lets a client finish uploading a body we are not going to read, so it sees our answer rather than a reset. */
export function drain(req: IncomingMessage): void {
  if (!req.readableEnded) req.resume();
}
