/** A broken invariant found by the simulator's checkers (as opposed to an assertion inside the core). */
export class SimViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimViolation';
  }
}

export function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new SimViolation(message);
}
