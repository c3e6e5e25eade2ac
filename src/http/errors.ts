/**
 * Edge errors: one class with a stable `code`, and one table from code to HTTP status (API.md).
 * The error handler turns every failure into `{"error": {"code", "message"}}`.
 */
import type { FastifyError } from 'fastify';
import { limits } from '../core/limits.js';
import { MembershipError, NodeUnavailableError, NotLeaderError } from '../runtime/herald-node.js';

export const errorStatus = {
  InvalidRequest: 400,
  Unauthenticated: 401,
  Forbidden: 403,
  TopicNotFound: 404,
  SubscriptionNotFound: 404,
  NotFound: 404,
  AlreadyExists: 409,
  PayloadTooLarge: 413,
  RateLimited: 429,
  InternalError: 500,
  NoLeader: 503,
  Unavailable: 503,
} as const;

export type ErrorCode = keyof typeof errorStatus;

export class HeraldError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'HeraldError';
    this.status = errorStatus[code];
  }
}

export const invalid = (message: string): HeraldError => new HeraldError('InvalidRequest', message);

/** The contract's status, code and message for any failure (HTTP answers and WebSocket error frames). */
export function toContractError(error: FastifyError | HeraldError | Error): {
  status: number;
  code: ErrorCode;
  message: string;
  retryAfterSeconds?: number;
} {
  if (error instanceof HeraldError) {
    return { status: error.status, code: error.code, message: error.message, ...(error.retryAfterSeconds !== undefined ? { retryAfterSeconds: error.retryAfterSeconds } : {}) };
  }
  if (error instanceof MembershipError) {
    return { status: 400, code: 'InvalidRequest', message: error.message };
  }
  if (error instanceof NotLeaderError) {
    return { status: 503, code: 'NoLeader', message: error.message, retryAfterSeconds: 1 };
  }
  if (error instanceof NodeUnavailableError) {
    return { status: 503, code: 'Unavailable', message: error.message, retryAfterSeconds: 1 };
  }
  const fe = error as FastifyError;
  if (fe.validation) return { status: 400, code: 'InvalidRequest', message: fe.message };
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return { status: 413, code: 'PayloadTooLarge', message: `request body over ${limits.requestBodyBytesMax} bytes` };
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    if (fe.statusCode === 404) return { status: 404, code: 'NotFound', message: fe.message };
    return { status: 400, code: 'InvalidRequest', message: fe.message };
  }
  return { status: 500, code: 'InternalError', message: 'internal error' };
}
