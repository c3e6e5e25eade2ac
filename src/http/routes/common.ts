/** Small pieces the route files share. */
import type { Reply } from '../../core/broker/machine.js';
import { HeraldError } from '../errors.js';

type Success = Exclude<Reply, { ok: false }>;

/** Unwraps a machine reply, turning a refusal into the edge error of the same code. */
export function expectOk<T extends Success = Success>(reply: Reply): T {
  if (!reply.ok) throw new HeraldError(reply.code, reply.message);
  return reply as T;
}
