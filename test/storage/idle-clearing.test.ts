// Goal: removed messages (a dropped topic, retention) are cleared from the index mostly while the node
// is idle, in steps nothing waits on, and the clearing finishes; a step that proposals wait on clears
// only a small share (storage's budgets are checked in clearing.test.ts).
// Method: a real single-node HeraldNode (LMDB in a temp dir) in this process, snapshots every few
// entries so that a topic's removal reaches the clearing at once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { HeraldNode } from '../../src/runtime/herald-node.js';
import { clearKeysPerStepMax, type LmdbStorage, type StepWrite } from '../../src/storage/lmdb-storage.js';
import { msg, topicConfig } from '../core/broker/harness.js';
import { eventually } from '../helpers/herald-process.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

test('a dropped topic is cleared in idle steps, and the clearing finishes while nothing else happens', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-idle-clearing-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const node = new HeraldNode({ dataDir: dir, snapshotEntriesInterval: 4 });
  cleanups.push(() => node.close());
  await node.caughtUp();
  const storage = (node as unknown as { storage: LmdbStorage }).storage;
  // Every step the node writes, and whether it was an idle one.
  const steps: { idle: boolean; entries: number }[] = [];
  const step = storage.step.bind(storage);
  storage.step = (write: StepWrite) => {
    steps.push({ idle: write.idle === true, entries: write.entries.length });
    return step(write);
  };
  const ok = (r: { ok: boolean }) => expect(r.ok).toBe(true);
  ok(await node.propose({ type: 'create-topic', name: 'big', config: topicConfig() }));
  ok(await node.propose({ type: 'create-topic', name: 'other', config: topicConfig() }));
  for (let b = 0; b < 30; b++) {
    ok(await node.propose({ type: 'publish', topic: 'big', messages: Array.from({ length: 100 }, (_, i) => msg(`m${b}-${i}`)) }));
  }
  ok(await node.propose({ type: 'delete-topic', name: 'big' }));
  // A few more entries: a snapshot covers the removal, which then goes to the clearing.
  for (let i = 0; i < 5 && !storage.hasClearing(); i++) ok(await node.propose({ type: 'publish', topic: 'other', messages: [msg('x')] }));
  expect(storage.hasClearing()).toBe(true);
  const before = steps.length;
  await eventually(() => !storage.hasClearing(), 10_000, 5); // the clearing finishes
  const idleSteps = steps.slice(before).filter((s) => s.idle);
  // 3,000 keys: most of them in idle steps of up to clearKeysPerStepMax each.
  expect(idleSteps.length).toBeGreaterThanOrEqual(Math.floor(2_000 / clearKeysPerStepMax));
  expect(idleSteps.every((s) => s.entries === 0)).toBe(true);
});
