/**
 * The "loading LoRA" progress event (GenerationProgress.loadingLoras) survives the Redis backend's progress encoding,
 * and the bot renders it as one line naming the LoRAs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadingLorasContent } from '../../src/discord/render.js';
import { decodeProgress, encodeProgress } from '../../src/queue/redis/protocol.js';

test('loadingLoras crosses Redis as it was sent; a step without it stays a step', () => {
  const decoded = decodeProgress(JSON.parse(JSON.stringify(encodeProgress({ step: 0, totalSteps: 20, loadingLoras: ['style', 'detail'] }))));
  assert.deepEqual(decoded, { step: 0, totalSteps: 20, loadingLoras: ['style', 'detail'] });
  assert.deepEqual(decodeProgress(JSON.parse(JSON.stringify(encodeProgress({ step: 3, totalSteps: 20 })))), { step: 3, totalSteps: 20 });
});

test('the reply line while a LoRA set is merged', () => {
  assert.equal(loadingLorasContent(['style', 'detail']), '🧩 Loading LoRA style, detail…');
});
