/**
 * Goal: subscription filters match as API.md says: tags match if any listed tag is on the message;
 * binding keys are `.`-separated words where `*` is exactly one word and `#` zero or more; a message
 * without a routingKey matches no binding key; with both, both must match; no filter matches all.
 * Method: worked examples (incl. `#` at the start, middle and end, and empty words), then fast-check
 * against a "dumb" reference matcher (naive recursion over the words).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bindingKeyMatches, compileFilter } from '../../../src/core/broker/filter.js';

const matches = (pattern: string, key: string) => bindingKeyMatches(pattern.split('.'), key.split('.'));

describe('bindingKeyMatches', () => {
  it.each([
    // literal words
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b', false],
    ['a.b', 'a.b.c', false],
    ['a.b.c', 'a.x.c', false],
    // * is exactly one word
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.c', false],
    ['a.*.c', 'a.b.b.c', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['*.*', 'a.b', true],
    // # at the end: zero or more
    ['a.#', 'a', true],
    ['a.#', 'a.b', true],
    ['a.#', 'a.b.c.d', true],
    ['a.#', 'b.a', false],
    // # at the start
    ['#.c', 'c', true],
    ['#.c', 'a.b.c', true],
    ['#.c', 'a.b.c.d', false],
    // # in the middle
    ['a.#.c', 'a.c', true],
    ['a.#.c', 'a.b.c', true],
    ['a.#.c', 'a.b.x.c', true],
    ['a.#.c', 'a.b.x', false],
    ['a.#.c', 'x.a.c', false],
    // # alone matches anything
    ['#', 'a', true],
    ['#', 'a.b.c', true],
    ['#', '', true],
    // combinations
    ['#.#', 'a', true],
    ['*.#', 'a', true],
    ['*.#', 'a.b.c', true],
    ['#.*', 'a.b', true],
    ['a.*.#', 'a', false],
    ['a.*.#', 'a.b', true],
    ['#.b.#', 'a.b.c', true],
    ['#.b.#', 'b', true],
    ['#.b.#', 'a.c', false],
    // empty words are words
    ['a..b', 'a..b', true],
    ['a.*.b', 'a..b', true],
    ['a.b', 'a..b', false],
    ['a.#.b', 'a..b', true],
    ['*', '', true],
    ['', '', true],
    ['', 'a', false],
    // wildcards are whole words only
    ['a*', 'ab', false],
    ['a#', 'a', false],
  ])('%s against %s → %s', (pattern, key, expected) => {
    expect(matches(pattern, key)).toBe(expected);
  });

  it('does not overflow or blow up on long patterns and keys', () => {
    const pattern = Array.from({ length: 64 }, () => '#').join('.') + '.z';
    const key = Array.from({ length: 2000 }, () => 'a').join('.');
    expect(matches(pattern, key)).toBe(false);
    expect(matches(pattern, key + '.z')).toBe(true);
  });

  it('agrees with a naive recursive reference on random patterns and keys', () => {
    const word = fc.constantFrom('a', 'b', 'c', '');
    const patternWord = fc.constantFrom('a', 'b', 'c', '', '*', '#');
    // Reference: plain recursive descent over the words, exponential but obviously right.
    const reference = (pattern: string[], words: string[]): boolean => {
      const go = (i: number, j: number): boolean => {
        if (i === pattern.length) return j === words.length;
        const p = pattern[i]!;
        if (p === '#') {
          for (let k = j; k <= words.length; k++) if (go(i + 1, k)) return true;
          return false;
        }
        return j < words.length && (p === '*' || p === words[j]) && go(i + 1, j + 1);
      };
      return go(0, 0);
    };
    fc.assert(
      fc.property(fc.array(patternWord, { minLength: 1, maxLength: 6 }), fc.array(word, { minLength: 1, maxLength: 7 }), (pattern, words) => {
        expect(bindingKeyMatches(pattern, words)).toBe(reference(pattern, words));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('compileFilter', () => {
  it('no filter, an empty filter or empty lists match every message', () => {
    for (const f of [null, {}, { tags: [] }, { bindingKeys: [] }, { tags: [], bindingKeys: [] }]) {
      const match = compileFilter(f);
      expect(match({})).toBe(true);
      expect(match({ tags: ['x'], routingKey: 'a.b' })).toBe(true);
    }
  });

  it('tags: any listed tag matches; a message without tags does not', () => {
    const match = compileFilter({ tags: ['paid', 'vip'] });
    expect(match({ tags: ['paid'] })).toBe(true);
    expect(match({ tags: ['x', 'vip'] })).toBe(true);
    expect(match({ tags: ['x'] })).toBe(false);
    expect(match({ tags: [] })).toBe(false);
    expect(match({})).toBe(false);
    expect(match({ routingKey: 'paid' })).toBe(false);
  });

  it('binding keys: any listed key matches; a message without a routingKey matches none', () => {
    const match = compileFilter({ bindingKeys: ['order.*.eu', 'audit.#'] });
    expect(match({ routingKey: 'order.created.eu' })).toBe(true);
    expect(match({ routingKey: 'audit' })).toBe(true);
    expect(match({ routingKey: 'order.created.us' })).toBe(false);
    expect(match({})).toBe(false);
    expect(compileFilter({ bindingKeys: ['#'] })({})).toBe(false);
    expect(compileFilter({ bindingKeys: ['#'] })({ routingKey: '' })).toBe(true);
  });

  it('with both, a message must match both', () => {
    const match = compileFilter({ tags: ['a'], bindingKeys: ['x.#'] });
    expect(match({ tags: ['a'], routingKey: 'x.y' })).toBe(true);
    expect(match({ tags: ['a'], routingKey: 'y' })).toBe(false);
    expect(match({ tags: ['b'], routingKey: 'x' })).toBe(false);
    expect(match({ tags: ['a'] })).toBe(false);
  });
});
