/**
 * Edge errors: one class with a stable `code`, and one table from code to HTTP status (API.md).
 * The error handler turns every failure into `{"error": {"code", "message"}}`.
 */
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
