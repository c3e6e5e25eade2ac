// Goal: a publish marks a message jsonSafe exactly when its utf8 data needs no JSON escape, since
// deliveries then copy its bytes into JSON unchecked (a wrong mark would send broken JSON).
// Method: fast-check over strings dense in what JSON escapes; the oracle is JSON.stringify on the text
// the stored bytes decode to, which is what a delivery without the mark writes.
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { publishItems } from '../../src/http/normalize.js';

const chars = fc.constantFrom('a', 'Z', ' ', '"', '\\', '\n', '\t', '\u0000', '\u001f', '\u007f', 'é', '😀', '\u2028', '\ud800', '/');

test('jsonSafe is set exactly for utf8 data whose stored text JSON leaves unescaped', () => {
  fc.assert(
    fc.property(fc.string({ unit: chars, maxLength: 30 }), fc.boolean(), (text, base64) => {
      const data = base64 ? Buffer.from(text, 'utf8').toString('base64') : text;
      const [item] = publishItems({ messages: [{ data, ...(base64 ? { encoding: 'base64' as const } : {}) }] }, 1 << 20);
      const stored = Buffer.from(item!.data).toString('utf8');
      const safe = !base64 && JSON.stringify(stored) === `"${stored}"`;
      expect(item!.jsonSafe === true).toBe(safe);
    }),
    { numRuns: 1000 },
  );
});
