/**
 * How a member's /imagine becomes the prompt-reading part of JobParams: the configured syntax (a1111 out of the box)
 * and clip skip, the per-request clip-skip option over generation.clipSkip, and nothing stored for the defaults that
 * jobs without the fields already mean (plain for a missing syntax is only for jobs stored before it existed).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig, type Config } from '../../src/config/index.js';
import { requestDefaults, resolveRequest } from '../../src/discord/rules.js';

describe('prompt syntax and clip skip in JobParams', () => {
  const config = loadConfig({ env: {}, cwd: '/nonexistent-folder-for-defaults' });
  const sizes = [config.generation.defaults.size];
  const withGeneration = (generation: Partial<Config['generation']>): Config => ({ ...config, generation: { ...config.generation, ...generation } });

  test('out of the box: a1111, clip skip 1 (not stored)', () => {
    assert.equal(config.generation.promptSyntax, 'a1111');
    assert.equal(config.generation.clipSkip, 1);
    const params = resolveRequest({ prompt: 'a (cat:1.2)' }, requestDefaults(config, 'pndm'), sizes);
    assert.equal(params.promptSyntax, 'a1111');
    assert.equal('clipSkip' in params, false);
  });

  test('generation.clipSkip 2 applies unless the member picks clip-skip 1; plain is kept when configured', () => {
    const defaults = requestDefaults(withGeneration({ clipSkip: 2, promptSyntax: 'plain' }), 'pndm');
    const byConfig = resolveRequest({ prompt: 'a cat' }, defaults, sizes);
    assert.equal(byConfig.clipSkip, 2);
    assert.equal(byConfig.promptSyntax, 'plain');
    assert.equal('clipSkip' in resolveRequest({ prompt: 'a cat', 'clip-skip': 1 }, defaults, sizes), false);
    const byMember = resolveRequest({ prompt: 'a cat', 'clip-skip': 2 }, requestDefaults(config, 'pndm'), sizes);
    assert.equal(byMember.clipSkip, 2);
  });

  test('a configured clip skip outside 1–2 is refused at start', () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagine-clip-skip-config-'));
    try {
      writeFileSync(join(dir, 'local.json'), JSON.stringify({ generation: { clipSkip: 3 } }));
      assert.throws(() => loadConfig({ env: {}, cwd: dir, configPath: join(dir, 'local.json') }), /generation\.clipSkip must be an integer between 1 and 2/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
