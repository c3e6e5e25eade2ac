/**
 * Publishing over a WebSocket (README, "WebSocket"): a client that publishes all day keeps one
 * connection open and sends each batch as a frame, where HTTP costs it a request (headers, routing,
 * hooks, a reply) per batch. `GET /v1/topics/{topic}/messages/ws` (or `/v1/queues/{queue}/messages/ws`)
 * upgrades on the leader; a follower proxies the socket there (websocket.ts).
 *
 *   client → server  {"type":"publish","id":<string or integer>,"messages":[ ...as POST .../messages ]}
 *   server → client  {"type":"published","id":...,"results":[ ...as POST's answer ]}   once committed
 *                    {"type":"error","id":...,"code":"...","message":"..."}             that frame failed
 *
 * A frame is one publish, checked as the HTTP body is (the same TypeBox schema, here compiled by
 * TypeBox rather than fastify's Ajv; the same limits, JSON rules and prototype-poisoning check) and
 * committed before it is answered; `id` is the client's, echoed back
 * (answers to frames that reach the log come in the order they were sent; one refused before that is
 * answered at once).
 * A frame that fails gets an error frame and the socket stays open: nothing of it was published. A
 * frame over the body limit closes the socket with 1009, and 100 bad frames in a row with 1008.
 *
 * Backpressure: while a socket has publishMessagesUnconfirmedMax messages not yet answered, or more
 * than sendBufferBytesMax of answers queued for a client that does not read them, the node stops
 * reading it (TCP then holds the client back) rather than queueing without bound. A token is
 * checked on every frame, as on every HTTP request: a revoked token's next frame is refused, and
 * each frame spends one request of its rate limit.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Type } from '@sinclair/typebox';
import type { RawData, WebSocket } from 'ws';
import type { DiskGuard } from '../runtime/disk-guard.js';
import { NotLeaderError, type HeraldNode } from '../runtime/herald-node.js';
import { closeCodes, isBackedUp, whenDrained } from '../delivery/ws-socket.js';
import { frameText } from '../delivery/ws-frames.js';
import { wsLimits } from '../delivery/ws-limits.js';
import { toContractError, type ErrorCode } from './errors.js';
import { PublishBody } from './schemas.js';
import { parseCheckedJson } from './json-body.js';
import { publish } from './routes/topics.js';
import type { Authenticator } from './auth.js';

/** The client's reference for a frame: a short string or an integer, echoed in the answer. */
const FrameId = Type.Union([Type.String({ minLength: 1, maxLength: wsLimits.publishIdLengthMax }), Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })]);
const PublishFrame = Type.Object(
  { type: Type.Literal('publish'), id: FrameId, messages: PublishBody.properties.messages },
  { additionalProperties: false },
);
const checkFrame = TypeCompiler.Compile(PublishFrame);

type FrameIdValue = string | number;

const checkId = TypeCompiler.Compile(FrameId);

/** The id of a frame that failed its check, when it has a usable one (so the client can match the error). */
function readableId(value: unknown): FrameIdValue | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const id = (value as { id?: unknown }).id;
  return checkId.Check(id) ? id : undefined;
}

export interface PublishSessionDeps {
  node: HeraldNode;
  disk?: DiskGuard;
  auth?: Authenticator;
}

/** One publishing socket on the leader. */
export class PublishSession {
  /** Messages received and not yet answered (what backpressure counts). */
  private unconfirmed = 0;
  private paused = false;
  private badInARow = 0;
  private closed = false;
  private waitingForDrain = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly topic: string,
    private readonly authorization: string | undefined,
    private readonly deps: PublishSessionDeps,
  ) {
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    // ws reports a broken frame (one over the size limit: 1009) as an error and closes the socket itself.
    ws.on('error', () => {});
    ws.once('close', () => {
      this.closed = true;
    });
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    if (isBinary) return this.refuse(undefined, 'InvalidRequest', 'frames are JSON text, not binary');
    let parsed: ReturnType<typeof parseCheckedJson>;
    try {
      parsed = parseCheckedJson(frameText(data));
    } catch {
      return this.refuse(undefined, 'InvalidRequest', 'a frame must be JSON (and holds no "__proto__" or "constructor" key)');
    }
    const frame = parsed.value;
    const type = typeof frame === 'object' && frame !== null ? (frame as { type?: unknown }).type : undefined;
    if (type !== 'publish') {
      const named = typeof type === 'string' ? `unknown frame type ${JSON.stringify(type.slice(0, 64))}` : 'a frame must be a JSON object with "type": "publish"';
      return this.refuse(readableId(frame), 'InvalidRequest', `${named}: publishing sockets take publish frames`);
    }
    if (!checkFrame.Check(frame)) {
      const first = checkFrame.Errors(frame).First();
      const where = first?.path ? `${first.path}: ` : '';
      return this.refuse(readableId(frame), 'InvalidRequest', `not a publish frame: ${where}${first?.message ?? 'invalid'}`);
    }
    const { id, messages } = frame;
    try {
      // Every frame is a request: a revoked token stops here, and each frame spends from its rate.
      this.deps.auth?.check(this.authorization, { action: 'publish', name: this.topic });
    } catch (error) {
      // Not a bad frame (401, 403, 429): answered like an HTTP request would be, and not counted.
      return this.send({ type: 'error', id, ...contractError(error) });
    }
    this.badInARow = 0;
    this.unconfirmed += messages.length;
    this.holdBackIfNeeded();
    // A topic gone or a full disk rejects like a failed commit: the frame's answer says which.
    publish(this.deps.node, this.topic, { messages }, parsed.withoutEscapes, this.deps.disk).then(
      ({ results }) => this.answered(messages.length, { type: 'published', id, results }),
      (error: unknown) => {
        this.answered(messages.length, { type: 'error', id, ...contractError(error) });
        // A node that stopped leading cannot commit anything more for this socket: the client
        // reconnects (any node serves), and retries what it got NoLeader for (dedupId makes that safe).
        if (error instanceof NotLeaderError) this.ws.close(closeCodes.serviceRestart, 'this node stopped leading; reconnect');
      },
    );
  }

  private answered(messages: number, frame: Record<string, unknown>): void {
    this.unconfirmed -= messages;
    this.send(frame);
    if (this.paused) this.resumeIfRoom();
    else this.holdBackIfNeeded();
  }

  /**
   * Stops reading the socket while it has too many messages unanswered, or while the answers queued
   * for it pass the send buffer's bound (a client that publishes and never reads its answers).
   */
  private holdBackIfNeeded(): void {
    if (this.paused || this.closed) return;
    if (this.unconfirmed < wsLimits.publishMessagesUnconfirmedMax && !isBackedUp(this.ws)) return;
    this.paused = true;
    this.ws.pause();
    this.resumeIfRoom();
  }

  /** Reads again once half the unanswered messages are answered and the answers have drained. */
  private resumeIfRoom(): void {
    if (this.closed || this.waitingForDrain) return;
    if (isBackedUp(this.ws)) {
      this.waitingForDrain = true;
      whenDrained(this.ws, () => {
        this.waitingForDrain = false;
        this.resumeIfRoom();
      });
      return;
    }
    if (this.unconfirmed >= wsLimits.publishMessagesUnconfirmedMax / 2) return; // an answer calls again
    this.paused = false;
    this.ws.resume();
  }

  private send(frame: Record<string, unknown>): void {
    if (!this.closed) this.ws.send(JSON.stringify(frame));
  }

  /** A bad frame: an error frame, and after too many in a row the socket is closed. */
  private refuse(id: FrameIdValue | undefined, code: ErrorCode, message: string): void {
    this.send({ type: 'error', ...(id !== undefined ? { id } : {}), code, message });
    if (++this.badInARow >= wsLimits.badFramesInARowMax) this.ws.close(closeCodes.policyViolation, 'too many bad frames in a row');
  }
}

/** The contract's code and message for why a publish failed, as HTTP would answer it. */
function contractError(error: unknown): { code: ErrorCode; message: string } {
  const { code, message } = toContractError(error instanceof Error ? error : new Error(String(error)));
  if (code === 'InternalError') console.error('herald: a WebSocket publish failed', error);
  return { code, message };
}
