/**
 * A local stand-in for the Hugging Face Hub, serving one model repository from a folder, with the routes and headers
 * the real Hub uses (as read from @huggingface/hub and huggingface_hub):
 *   GET /api/models/{repo}/revision/{rev}        model info with `sha` (the commit)
 *   GET /api/models/{repo}/tree/{rev}[/{path}]   file list: path, size, git blob `oid`, `lfs: {oid (sha256), size}`;
 *                                                paginated with a `Link: <…>; rel="next"` header
 *   GET /{repo}/resolve/{rev}/{path}             small files: the bytes, ETag = git blob sha1, X-Repo-Commit;
 *                                                LFS files: 302 to a separate CDN origin, with X-Linked-Etag (sha256),
 *                                                X-Linked-Size and X-Repo-Commit, as the Hub does
 *   CDN GET /lfs/{sha256}                        the bytes; both servers honour Range (206 + Content-Range)
 * Fault injection for the tests: drop the connection mid-file, corrupt a file's bytes, require a token.
 * Every request is recorded so tests can assert what the client sent.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  range: string | undefined;
  authorization: string | undefined;
}

export interface FakeHubOptions {
  /** owner/name */
  repo: string;
  /** The folder served as the repository's content at `branch`. */
  folder: string;
  /** More files in the repository, by path (README, weights in other formats: things a pull must skip). */
  extraFiles?: Record<string, string | Buffer>;
  branch?: string;
  /** When set, every route answers 401 unless `Authorization: Bearer <token>` is sent. */
  token?: string;
  /** Tree page size (the Hub paginates long recursive listings). */
  pageSize?: number;
  /** Cut the connection after sending this many body bytes of the file, on the first `times` full downloads. */
  dropAfter?: { path: string; bytes: number; times?: number };
  /** Serve this file with one byte changed (same size), so only its hash can tell. */
  corrupt?: { path: string };
}

interface RepoFile {
  path: string;
  content: Buffer;
  lfs: boolean;
  /** git blob sha1 of the content (small files) or of the LFS pointer file (LFS files), as the Hub reports `oid`. */
  oid: string;
  sha256: string;
}

export interface FakeHub {
  /** The Hub endpoint, for HF_ENDPOINT. */
  url: string;
  commit: string;
  branch: string;
  files: RepoFile[];
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** What git stores a file as: sha1 over "blob <size>\0" + content. */
function gitBlobSha1(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

/** Which files the Hub keeps in LFS: its default .gitattributes covers these. */
function storedInLfs(path: string): boolean {
  return /\.(onnx|pb|onnx_data|bin|safetensors|ckpt|msgpack|h5)$/.test(path);
}

function walk(folder: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(folder)) {
    const full = join(folder, name);
    if (statSync(full).isDirectory()) out.push(...walk(full));
    else out.push(full);
  }
  return out;
}

function repoFiles(options: FakeHubOptions): RepoFile[] {
  const contents = new Map<string, Buffer>();
  for (const file of walk(options.folder)) contents.set(relative(options.folder, file).split(sep).join('/'), readFileSync(file));
  for (const [path, content] of Object.entries(options.extraFiles ?? {})) contents.set(path, Buffer.from(content));
  return [...contents.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([path, content]) => {
      const sha256 = createHash('sha256').update(content).digest('hex');
      const lfs = storedInLfs(path);
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${content.length}\n`);
      return { path, content, lfs, sha256, oid: gitBlobSha1(lfs ? pointer : content) };
    });
}

function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  const match = header ? /^bytes=(\d+)-(\d*)$/.exec(header) : null;
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = match[2] ? Math.min(Number(match[2]), size - 1) : size - 1;
  return { start, end };
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

export async function startFakeHub(options: FakeHubOptions): Promise<FakeHub> {
  const branch = options.branch ?? 'main';
  const files = repoFiles(options);
  const commit = createHash('sha1').update(files.map((f) => `${f.path}:${f.oid}`).join('\n')).digest('hex');
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let drops = 0;

  const record = (server: 'hub' | 'cdn', req: IncomingMessage) =>
    requests.push({
      server,
      method: req.method ?? 'GET',
      url: req.url ?? '',
      range: req.headers.range,
      authorization: req.headers.authorization,
    });

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };

  /** Sends a file's bytes honouring Range, with the configured faults. */
  const sendBytes = (req: IncomingMessage, res: ServerResponse, file: RepoFile, headers: Record<string, string>) => {
    let content = file.content;
    if (options.corrupt?.path === file.path) {
      content = Buffer.from(content);
      const middle = Math.floor(content.length / 2);
      content[middle] = (content[middle] ?? 0) ^ 0xff;
    }
    const range = parseRange(req.headers.range, content.length);
    const start = range?.start ?? 0;
    const end = range?.end ?? content.length - 1;
    if (range && start >= content.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${content.length}` });
      res.end();
      return;
    }
    const body = content.subarray(start, end + 1);
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'Accept-Ranges': 'bytes',
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(body.length),
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${content.length}` } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const drop = options.dropAfter;
    if (drop && drop.path === file.path && start === 0 && body.length > drop.bytes && drops < (drop.times ?? 1)) {
      drops += 1;
      // Send part of the body, then cut the connection the way a flaky network does.
      res.write(body.subarray(0, drop.bytes), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  };

  let cdnUrl = '';
  const repoPrefix = `/${options.repo}/`;

  const hub = createServer((req, res) => {
    record('hub', req);
    const url = new URL(req.url ?? '/', 'http://hub');
    const path = decodeURIComponent(url.pathname);
    if (options.token && req.headers.authorization !== `Bearer ${options.token}`) {
      json(res, 401, { error: 'Invalid credentials in Authorization header' }, { 'X-Error-Code': 'RepoNotFound' });
      return;
    }
    const knownRevision = (rev: string) => rev === branch || rev === commit || rev === 'HEAD';

    const infoPrefix = `/api/models/${options.repo}/revision/`;
    if (path.startsWith(infoPrefix)) {
      const rev = path.slice(infoPrefix.length);
      if (!knownRevision(rev)) {
        json(res, 404, { error: `Invalid rev id: ${rev}` }, { 'X-Error-Code': 'RevisionNotFound' });
        return;
      }
      json(res, 200, {
        _id: '0123456789abcdef01234567',
        id: options.repo,
        sha: commit,
        private: false,
        gated: false,
        downloads: 0,
        likes: 0,
        lastModified: '2026-11-26T00:00:00.000Z',
        pipeline_tag: 'text-to-image',
        siblings: files.map((f) => ({ rfilename: f.path })),
      });
      return;
    }

    const treePrefix = `/api/models/${options.repo}/tree/`;
    if (path.startsWith(treePrefix)) {
      const [rev = '', ...rest] = path.slice(treePrefix.length).split('/');
      if (!knownRevision(rev)) {
        json(res, 404, { error: `Invalid rev id: ${rev}` }, { 'X-Error-Code': 'RevisionNotFound' });
        return;
      }
      const under = rest.join('/');
      const recursive = url.searchParams.get('recursive') === 'true';
      const entries: object[] = [];
      const directories = new Set<string>();
      for (const file of files) {
        if (under && !file.path.startsWith(`${under}/`)) continue;
        const inside = under ? file.path.slice(under.length + 1) : file.path;
        const parts = inside.split('/');
        for (let depth = 1; depth < parts.length; depth++) {
          if (!recursive && depth > 1) break;
          const dir = [under, ...parts.slice(0, depth)].filter(Boolean).join('/');
          if (!directories.has(dir)) {
            directories.add(dir);
            entries.push({ type: 'directory', oid: createHash('sha1').update(dir).digest('hex'), size: 0, path: dir });
          }
        }
        if (!recursive && parts.length > 1) continue;
        entries.push({
          type: 'file',
          oid: file.oid,
          size: file.content.length,
          path: file.path,
          ...(file.lfs ? { lfs: { oid: file.sha256, size: file.content.length, pointerSize: 134 } } : {}),
        });
      }
      const pageSize = options.pageSize ?? 1000;
      const cursor = Number(url.searchParams.get('cursor') ?? '0');
      const page = entries.slice(cursor, cursor + pageSize);
      const headers: Record<string, string> = {};
      if (cursor + pageSize < entries.length) {
        const next = new URL(req.url ?? '/', `http://${req.headers.host}`);
        next.searchParams.set('cursor', String(cursor + pageSize));
        headers['Link'] = `<${next.href}>; rel="next"`;
      }
      json(res, 200, page, headers);
      return;
    }

    if (path.startsWith(repoPrefix) && path.slice(repoPrefix.length).startsWith('resolve/')) {
      const [rev = '', ...rest] = path.slice(repoPrefix.length + 'resolve/'.length).split('/');
      const filePath = rest.join('/');
      if (!knownRevision(rev)) {
        json(res, 404, { error: `Invalid rev id: ${rev}` }, { 'X-Error-Code': 'RevisionNotFound' });
        return;
      }
      const file = files.find((f) => f.path === filePath);
      if (!file) {
        json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
        return;
      }
      if (file.lfs) {
        res.writeHead(302, {
          Location: `${cdnUrl}/lfs/${file.sha256}?response-content-disposition=attachment`,
          ETag: `"${file.sha256}"`,
          'X-Linked-Etag': `"${file.sha256}"`,
          'X-Linked-Size': String(file.content.length),
          'X-Repo-Commit': commit,
          'Content-Length': '0',
        });
        res.end();
        return;
      }
      sendBytes(req, res, file, { ETag: `"${file.oid}"`, 'X-Repo-Commit': commit });
      return;
    }
    json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
  });

  const cdn = createServer((req, res) => {
    record('cdn', req);
    const url = new URL(req.url ?? '/', 'http://cdn');
    const sha256 = url.pathname.replace(/^\/lfs\//, '');
    const file = files.find((f) => f.lfs && f.sha256 === sha256);
    if (!file) {
      res.writeHead(404);
      res.end();
      return;
    }
    sendBytes(req, res, file, { ETag: `"${file.sha256}"` });
  });

  for (const server of [hub, cdn]) server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const hubUrl = await listen(hub);
  cdnUrl = await listen(cdn);

  return {
    url: hubUrl,
    commit,
    branch,
    files,
    requests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all([hub, cdn].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    },
  };
}
