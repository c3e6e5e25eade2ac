/**
 * Invariant checks that stay on in production. A broken invariant is a programmer error: the process
 * stops rather than carry on with state it cannot trust (TigerBeetle's "assertions downgrade
 * catastrophic correctness bugs into liveness bugs").
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
