/**
 * The WebSocket side's own limits (API.md fixes only the ackId ones). They bound what one socket can
 * make the node hold: its frames, its credits, its leases and the bytes queued for it.
 */
import { assert } from '../core/assert.js';
import { limits } from '../core/limits.js';

export const wsLimits = {
  /** A client frame over this closes the socket with 1009 (ws's maxPayload). The largest valid frame,
   * an ack of 1000 ackIds of 256 characters, is about 260 KiB. */
  clientFrameBytesMax: 1024 * 1024,
  /** A publish frame over this closes the socket with 1009: the HTTP body limit, and room for the
   * frame's `type` and `id` around the same messages. */
  publishFrameBytesMax: limits.requestBodyBytesMax + 1024,
  /** Messages a publishing socket may have sent and not yet had answered; past it the node stops
   * reading the socket until half are answered (TCP holds the client back meanwhile). */
  publishMessagesUnconfirmedMax: 10_000,
  /** A publish frame's `id` as a string: 1–128 characters, like a dedupId. */
  publishIdLengthMax: 128,
  /** Credits a consumer may have granted and not yet used; a credit frame past it is refused. */
  creditsOutstandingMax: 10_000,
  /** Leases one consumer socket may hold unacked; past it nothing more is leased to it until it acks
   * or its leases run out (credits alone would let a client that never acks take the whole backlog). */
  leasesPerSocketMax: 10_000,
  /** Messages one pull on behalf of a socket leases (fewer when messages are large: see BatchSizer). */
  pullBatchMax: 500,
  /** Pulls one socket may have in the log at once (each with its credits reserved). */
  pullsInFlightMax: 3,
  /** Messages one read of a topic tail sends. */
  tailBatchMax: 500,
  /** Bytes queued for a socket above which no more is pulled or read for it until it drains. */
  sendBufferBytesMax: 1024 * 1024,
  /** ackIds per ack or nack frame: as the HTTP routes. */
  ackIdsPerFrameMax: limits.ackIdsPerRequestMax,
  ackIdLengthMax: limits.ackIdLengthMax,
  /** Bad frames in a row after which the client is taken to be abusive and the socket is closed (1008). */
  badFramesInARowMax: 100,
  /** Server pings this often; a socket that has not answered the previous ping is terminated. */
  pingIntervalMsDefault: 15_000,
  /** How long a follower waits for the leader to accept a proxied socket. */
  proxyHandshakeMs: 5_000,
  /** Bytes of a refused upstream answer a follower passes on to its client. */
  proxyRefusalBodyBytesMax: 64 * 1024,
} as const;

assert(wsLimits.publishMessagesUnconfirmedMax >= limits.publishBatchMessagesMax, 'a full batch fits what a publishing socket may have unanswered');
assert(wsLimits.pullBatchMax <= limits.pullMessagesMax, 'a socket pull is a pull');
assert(wsLimits.pullBatchMax <= wsLimits.creditsOutstandingMax, 'a batch fits the credits');
assert(wsLimits.ackIdsPerFrameMax * (wsLimits.ackIdLengthMax + 3) + 100 < wsLimits.clientFrameBytesMax, 'a full ack frame fits a frame');
