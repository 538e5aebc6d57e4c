import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { drain } from './router.js';

/**
 * Serves the sandbox page (plain HTML + JS in `src/emulator/web`, no build step). Compiled code runs from
 * `dist/src/emulator`, where tsc copies no HTML, so the source folder is found relative to the repository root.
 */
const here = dirname(fileURLToPath(import.meta.url));
function findWebDir(): string | null {
  if (existsSync(join(here, 'web', 'index.html'))) return join(here, 'web');
  // From dist/src/emulator, walk up to the checkout and use its src/emulator/web.
  let dir = here;
  for (let i = 0; i < 6; i += 1) {
    dir = dirname(dir);
    const candidate = join(dir, 'src', 'emulator', 'web');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
  }
  return null;
}
const webDir = findWebDir();

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

export function servePage(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  const entry = FILES[path];
  if (!entry || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  drain(req);
  if (!webDir) {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end('sandbox page files not found (src/emulator/web)');
    return true;
  }
  const body = readFileSync(join(webDir, entry.file));
  res.writeHead(200, { 'Content-Type': entry.type, 'Content-Length': body.length, 'Cache-Control': 'no-cache' });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
