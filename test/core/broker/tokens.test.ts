// Goal: token scopes allow exactly what they name, and tokens live in the replicated state (created,
// revoked, carried by snapshots) with only the secret's hash.
import { describe, expect, it } from 'vitest';
import { allows, isAdmin } from '../../../src/core/broker/tokens.js';
import { BrokerMachine } from '../../../src/core/broker/machine.js';
import { MemoryMessageStore } from '../../../src/storage/memory-store.js';

describe('scopes', () => {
  it('admin allows everything; an action allows only names its pattern matches', () => {
    expect(isAdmin(['admin'])).toBe(true);
    expect(isAdmin(['publish:*'])).toBe(false);
    expect(allows(['admin'], 'consume', 'anything')).toBe(true);
    expect(allows(['publish:orders-*'], 'publish', 'orders-eu')).toBe(true);
    expect(allows(['publish:orders-*'], 'publish', 'orders-')).toBe(true);
    expect(allows(['publish:orders-*'], 'publish', 'audit')).toBe(false);
    expect(allows(['publish:orders-*'], 'consume', 'orders-eu')).toBe(false);
    expect(allows(['consume:a.b'], 'consume', 'a.b')).toBe(true);
    expect(allows(['consume:a.b'], 'consume', 'aXb')).toBe(false); // `.` is a dot, not any character
    expect(allows(['tail:*'], 'tail', 't')).toBe(true);
    expect(allows([], 'publish', 't')).toBe(false);
  });
});

describe('tokens in the state machine', () => {
  it('create, revoke, and restore from a snapshot', () => {
    const m = new BrokerMachine(new MemoryMessageStore());
    const token = { id: '0123456789abcdef', name: 'ci', secretHash: 'ab'.repeat(32), scopes: ['publish:t'], createdAtMs: 0 };
    expect(m.apply({ nowMs: 1000, command: { type: 'create-token', token } }, 1).reply).toEqual({ ok: true, created: true });
    expect(m.apply({ nowMs: 1000, command: { type: 'create-token', token } }, 2).reply).toMatchObject({ ok: false, code: 'AlreadyExists' });
    expect(m.token(token.id)).toEqual({ ...token, createdAtMs: 1000 });
    const copy = new BrokerMachine(new MemoryMessageStore());
    copy.restore(structuredClone(m.snapshot()));
    expect(copy.tokenList()).toEqual(m.tokenList());
    expect(m.apply({ nowMs: 2000, command: { type: 'revoke-token', id: token.id } }, 3).reply).toEqual({ ok: true });
    expect(m.token(token.id)).toBeUndefined();
    expect(m.apply({ nowMs: 2000, command: { type: 'revoke-token', id: token.id } }, 4).reply).toMatchObject({ ok: false, code: 'NotFound' });
  });
});
