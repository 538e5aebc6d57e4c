#!/usr/bin/env node
// The house rule "dependencies point one way", checked: every import between the project's own modules must go from
// a layer to one it may use (cli → app → discord → queue → diffusion, with shared roots anyone may use), a layer
// with an entry module may be reached from other layers only through it, and the module graph must have no cycles.
// Runs before the tests in `npm test`, so a wrong import fails CI.
//
// Usage: node scripts/check-deps.mjs [root]   (root defaults to the repository this script is in)
// Exit 0 and one summary line when the graph is clean; exit 1 and one line per broken rule otherwise.
//
// Written as a small script rather than a dependency: the graph is plain ESM with relative specifiers, so reading
// `import … from '…'`, `export … from '…'` and `import('…')` is enough.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Layers by path prefix (first match wins), and which layers each may import. A layer always may import itself.
 * `shared` is the root everyone may use and that uses nothing above it. A layer with an `entry` is reached from other
 * layers only through that module: its other files are its own business.
 */
export const LAYERS = [
  { name: 'shared', prefixes: ['src/errors.ts', 'src/util/'], mayImport: [] },
  // The logger is configured from the config's types, so it sits just above config.
  { name: 'log', prefixes: ['src/log.ts'], mayImport: ['shared', 'config'] },
  { name: 'commands', prefixes: ['commands/'], mayImport: ['shared', 'config'] },
  { name: 'config', prefixes: ['src/config/'], mayImport: ['shared', 'diffusion'] },
  { name: 'emulator', prefixes: ['src/emulator/'], mayImport: ['shared'] },
  { name: 'diffusion', prefixes: ['src/diffusion/'], mayImport: ['shared'] },
  // The package's library entry (package.json `exports`): the engine, without the bot.
  { name: 'library', prefixes: ['src/index.ts'], mayImport: ['shared', 'diffusion'] },
  { name: 'hub', prefixes: ['src/hub/'], mayImport: ['shared', 'config'] },
  // The queue is the contract between the bot and the engine; what the bot needs of the engine it re-exports.
  { name: 'queue', prefixes: ['src/queue/'], entry: 'src/queue/index.ts', mayImport: ['shared', 'config', 'diffusion'] },
  // The bot knows Discord and the queue, not the engine: it never imports diffusion.
  { name: 'discord', prefixes: ['src/discord/'], mayImport: ['shared', 'log', 'config', 'commands', 'queue'] },
  // The composition root: loads the engine, picks the queue backend and the ImageGenerator, starts the bot.
  { name: 'app', prefixes: ['src/app/'], mayImport: ['shared', 'log', 'config', 'commands', 'discord', 'queue', 'diffusion'] },
  { name: 'cli', prefixes: ['src/cli/'], mayImport: ['shared', 'log', 'config', 'commands', 'hub', 'emulator', 'app', 'discord', 'queue', 'diffusion'] },
];

const SOURCE_DIRS = ['src', 'commands'];

function listSources(root, dir) {
  const found = [];
  const full = join(root, dir);
  if (!existsSync(full)) return found;
  for (const name of readdirSync(full)) {
    const path = join(full, name);
    if (statSync(path).isDirectory()) found.push(...listSources(root, join(dir, name)));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) found.push(join(dir, name).split(sep).join('/'));
  }
  return found;
}

export function layerOf(file) {
  return LAYERS.find((layer) => layer.prefixes.some((prefix) => (prefix.endsWith('/') ? file.startsWith(prefix) : file === prefix)));
}

const SPECIFIER = /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Relative specifiers of one file, with whether the import is type-only (erased at run time). */
export function importsOf(text) {
  const found = [];
  // Comments could hold example imports (READMEs in doc comments): drop them first.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  for (const match of code.matchAll(SPECIFIER)) {
    const specifier = match[1] ?? match[2];
    if (!specifier?.startsWith('.')) continue;
    found.push({ specifier, typeOnly: /^\s*[;}]?\s*(?:import|export)\s+type\s/.test(match[0]) });
  }
  return found;
}

function resolveImport(root, fromFile, specifier) {
  const base = resolve(root, dirname(fromFile), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, join(base, 'index.ts')];
  const hit = candidates.find((candidate) => existsSync(candidate) && statSync(candidate).isFile());
  return hit ? relative(root, hit).split(sep).join('/') : undefined;
}

/** Every broken rule in the tree under `root`, as one readable line each. */
export function checkDependencies(root) {
  const problems = [];
  const files = SOURCE_DIRS.flatMap((dir) => listSources(root, dir));
  const graph = new Map();
  for (const file of files) {
    const from = layerOf(file);
    const edges = [];
    for (const { specifier, typeOnly } of importsOf(readFileSync(join(root, file), 'utf8'))) {
      const target = resolveImport(root, file, specifier);
      if (!target) continue; // JSON, package files and the like: not part of the layering
      if (!target.endsWith('.ts')) continue;
      const to = layerOf(target);
      if (from && to && from !== to && !from.mayImport.includes(to.name)) {
        problems.push(`${file} imports ${target}: the ${from.name} layer may not import the ${to.name} layer (allowed: ${from.mayImport.join(', ') || 'none'})`);
      } else if (from && to && from !== to && to.entry && target !== to.entry) {
        problems.push(`${file} imports ${target}: the ${to.name} layer is imported only through its entry ${to.entry}`);
      }
      if (!typeOnly) edges.push(target);
    }
    graph.set(file, edges);
  }
  for (const cycle of findCycles(graph)) problems.push(`import cycle: ${cycle.join(' → ')}`);
  return { files: files.length, problems };
}

/** One representative cycle per strongly connected component with more than one module (or a self-import). */
function findCycles(graph) {
  const cycles = [];
  const state = new Map(); // undefined: new, 1: on the stack, 2: done
  const stack = [];
  const visit = (node) => {
    state.set(node, 1);
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 1) cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 2);
  };
  for (const node of [...graph.keys()].sort()) if (state.get(node) === undefined) visit(node);
  return cycles;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const { files, problems } = checkDependencies(root);
  if (problems.length > 0) {
    for (const problem of problems) console.error(`dependency rule broken: ${problem}`);
    console.error(`check-deps: ${problems.length} problem(s) in ${files} modules (rules: scripts/check-deps.mjs LAYERS)`);
    process.exit(1);
  }
  console.log(`check-deps: ${files} modules, imports follow the layers, no cycles`);
}
