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

/** A single node whose topic "big" (3,000 messages) was dropped and is now being cleared; `steps` lists
 * every step written from the start, `onStep` sees each before it is written. */
async function nodeClearingATopic(durability: 'sync' | 'relaxed', onStep: (write: StepWrite) => void = () => {}) {
  const dir = mkdtempSync(join(tmpdir(), 'herald-idle-clearing-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const node = new HeraldNode({ dataDir: dir, snapshotEntriesInterval: 4, durability });
  cleanups.push(() => node.close());
  await node.caughtUp();
  const storage = (node as unknown as { storage: LmdbStorage }).storage;
  // Every step the node writes, and whether it was an idle one.
  const steps: { idle: boolean; entries: number }[] = [];
  const step = storage.step.bind(storage);
  storage.step = (write: StepWrite) => {
    steps.push({ idle: write.idle === true, entries: write.entries.length });
    onStep(write);
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
  return { storage, steps };
}

test('a dropped topic is cleared in idle steps, and the clearing finishes while nothing else happens', async () => {
  const { storage, steps } = await nodeClearingATopic('sync');
  const before = steps.length;
  await eventually(() => !storage.hasClearing(), 10_000, 5); // the clearing finishes
  const idleSteps = steps.slice(before).filter((s) => s.idle);
  // 3,000 keys: most of them in idle steps of up to clearKeysPerStepMax each.
  expect(idleSteps.length).toBeGreaterThanOrEqual(Math.floor(2_000 / clearKeysPerStepMax));
  expect(idleSteps.every((s) => s.entries === 0)).toBe(true);
});

test('relaxed: steps commit on the calling thread, and a run of idle steps still lets the event loop in between them', async () => {
  // A callback queued when the first idle step starts must run while clearing is still going on.
  // A relaxed step awaits no I/O, so without the node's yield between steps the whole run of idle
  // steps would go by in one turn of the event loop, before the callback.
  let queued = false;
  let clearingWhenCallbackRan: boolean | undefined;
  const { storage } = await nodeClearingATopic('relaxed', (write) => {
    if (!write.idle || queued) return;
    queued = true;
    setImmediate(() => (clearingWhenCallbackRan = storage.hasClearing()));
  });
  expect(storage.commitsInline).toBe(true);
  await eventually(() => !storage.hasClearing(), 10_000, 5);
  expect(queued).toBe(true);
  expect(clearingWhenCallbackRan).toBe(true);
});
