/**
 * Node-to-node transport: one outbound TCP connection per peer, carrying length-framed binary Raft
 * messages one way; inbound connections only receive. A connection starts with a mutual
 * challenge–response over the cluster secret (HMAC-SHA256), so a peer without it is refused before a
 * single message is read, and a node cannot be impersonated. Buffers are bounded: a peer that does
 * not drain loses messages, which Raft tolerates (it retransmits), rather than growing memory.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, connect, isIP, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import type { Message } from '../core/raft/messages.js';
import type { NodeId } from '../core/raft/types.js';
import { decodeFrame, encodeMessageParts, encodeSnapshotChunk, FrameError, frameBytesMax, type PeerFrame, type SnapshotChunk } from './peer-codec.js';

export interface PeerAddress {
  id: NodeId;
  host: string;
  raftPort: number;
  httpPort: number;
}

export interface PeerTransportOptions {
  selfId: NodeId;
  host: string;
  port: number;
  secret: string;
  onMessage: (message: PeerFrame) => void;
  /** Called when a peer connection is refused or misbehaves (for logs and tests). */
  onRefused?: (reason: string) => void;
  /**
   * TLS for node-to-node traffic (PEM): this node's certificate and key, and the CA that signed the
   * peers'. The secret handshake runs inside it as without TLS.
   */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
}

const magic = Buffer.from('HRLD');
const challengeBytes = 32;
const macBytes = 32;
const handshakeTimeoutMs = 5000;
/** Bytes queued for one peer before new messages to it are dropped. */
const outboundBytesMax = 32 * 1024 * 1024;
const inboundConnectionsMax = 64;
/** A snapshot stream waits for the socket to drain below this before it writes its next chunk. */
const streamBufferBytesMax = 8 * 1024 * 1024;
/** Connections still in the handshake; when full, the oldest is dropped so a real peer always gets in. */
const handshakingMax = 16;
const reconnectDelayMsMax = 2000;

function mac(secret: string, label: string, challenge: Buffer, id: NodeId): Buffer {
  const idBytes = Buffer.alloc(4);
  idBytes.writeUInt32BE(id);
  return createHmac('sha256', secret).update(label).update(challenge).update(idBytes).digest();
}

function macEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Reads exactly `n` bytes from a socket's stream during the handshake. */
class ByteQueue {
  private chunks: Buffer[] = [];
  private size = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  get length(): number {
    return this.size;
  }
  take(n: number): Buffer | undefined {
    if (this.size < n) return undefined;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
    return out;
  }
}

class OutboundPeer {
  private socket: Socket | null = null;
  private ready = false;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private reconnectDelayMs = 100;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private address: PeerAddress,
    private readonly transport: PeerTransport,
  ) {}

  setAddress(address: PeerAddress): void {
    const changed = address.host !== this.address.host || address.raftPort !== this.address.raftPort;
    this.address = address;
    if (changed) this.socket?.destroy();
  }

  /** Sends one frame, given as the parts `encodeMessageParts` made (written back to back, not joined). */
  send(parts: Uint8Array[]): void {
    if (this.closed) return;
    if (this.ready && this.socket) {
      if (this.socket.writableLength > outboundBytesMax) return; // not draining: drop, Raft resends
      for (const part of parts) this.socket.write(part);
      return;
    }
    let bytes = 0;
    for (const part of parts) bytes += part.length;
    if (this.queuedBytes + bytes > outboundBytesMax) return;
    for (const part of parts) this.queue.push(part);
    this.queuedBytes += bytes;
    if (!this.socket && !this.timer) this.connect();
  }

  /**
   * Sends one frame of a stream that must not be dropped (a snapshot): waits for the connection and
   * for its buffer to drain. False when the connection failed or did not come up in time; the
   * stream is then abandoned (the receiver discards an incomplete one).
   */
  async sendReliably(frame: Buffer, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (!this.ready) {
      if (!this.socket && !this.timer) this.connect();
      while (!this.ready) {
        if (this.closed || Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const socket = this.socket!;
    if (socket.writableLength > streamBufferBytesMax) {
      const drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => done(false), Math.max(0, deadline - Date.now()));
        const done = (ok: boolean) => {
          clearTimeout(timer);
          socket.off('drain', onDrain);
          socket.off('close', onClose);
          resolve(ok);
        };
        const onDrain = () => done(true);
        const onClose = () => done(false);
        socket.on('drain', onDrain);
        socket.on('close', onClose);
      });
      if (!drained) return false;
    }
    if (socket !== this.socket || !this.ready) return false;
    socket.write(frame);
    return true;
  }

  cork(): void {
    if (this.ready) this.socket?.cork();
  }

  uncork(): void {
    if (this.ready) this.socket?.uncork();
  }

  private connect(): void {
    if (this.closed) return;
    const tls = this.transport.tlsOptions;
    const host = this.address.host;
    const socket: Socket = tls
      ? tlsConnect({
          host,
          port: this.address.raftPort,
          cert: tls.cert,
          key: tls.key,
          ...(tls.ca ? { ca: tls.ca } : {}),
          // SNI takes names only; an address is checked against the certificate's IP entries.
          ...(isIP(host) ? {} : { servername: host }),
        })
      : connect({ host, port: this.address.raftPort });
    this.socket = socket;
    socket.setNoDelay(true);
    const input = new ByteQueue();
    let stage: 'challenge' | 'proof' = 'challenge';
    const myChallenge = randomBytes(challengeBytes);
    const timeout = setTimeout(() => socket.destroy(), handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => {
      if (this.ready) return; // the server never sends frames back
      input.push(chunk);
      if (stage === 'challenge') {
        const hello = input.take(magic.length + challengeBytes);
        if (!hello) return;
        if (!hello.subarray(0, magic.length).equals(magic)) return socket.destroy();
        const serverChallenge = hello.subarray(magic.length);
        const head = Buffer.alloc(4);
        head.writeUInt32BE(this.transport.selfId);
        socket.write(Buffer.concat([head, myChallenge, mac(this.transport.secret, 'client', serverChallenge, this.transport.selfId)]));
        stage = 'proof';
      }
      if (stage === 'proof') {
        const proof = input.take(4 + macBytes);
        if (!proof) return;
        const serverId = proof.readUInt32BE(0);
        const expected = mac(this.transport.secret, 'server', myChallenge, this.address.id);
        if (serverId !== this.address.id || !macEqual(proof.subarray(4), expected)) {
          this.transport.refused(`peer ${this.address.id} at ${this.address.host}:${this.address.raftPort} failed the handshake`);
          return socket.destroy();
        }
        clearTimeout(timeout);
        this.ready = true;
        this.reconnectDelayMs = 100;
        socket.cork();
        for (const f of this.queue) socket.write(f);
        socket.uncork();
        this.queue = [];
        this.queuedBytes = 0;
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timeout);
      this.ready = false;
      this.socket = null;
      if (this.closed) return;
      // Reconnect with backoff; what was queued stays (bounded).
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.queue.length > 0) this.connect();
      }, this.reconnectDelayMs);
      this.timer.unref();
      this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, reconnectDelayMsMax);
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.destroy();
  }
}

export class PeerTransport {
  readonly selfId: NodeId;
  readonly secret: string;
  private readonly server: Server;
  private readonly peers = new Map<NodeId, OutboundPeer>();
  private readonly inbound = new Set<Socket>();
  private readonly handshaking = new Set<Socket>();
  private readonly opts: PeerTransportOptions;

  constructor(opts: PeerTransportOptions) {
    if (opts.secret.length < 16) throw new Error('the cluster secret must be at least 16 characters');
    this.opts = opts;
    this.selfId = opts.selfId;
    this.secret = opts.secret;
    const tls = opts.tls;
    this.server = tls
      ? tlsCreateServer(
          // Mutual TLS when a CA is given: a peer must show a certificate that CA signed.
          { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}), handshakeTimeout: handshakeTimeoutMs },
          (socket) => this.accept(socket),
        )
      : createServer((socket) => this.accept(socket));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : this.opts.port;
  }

  setPeers(addresses: PeerAddress[]): void {
    const wanted = new Map(addresses.filter((a) => a.id !== this.selfId).map((a) => [a.id, a]));
    for (const [id, peer] of this.peers) {
      if (!wanted.has(id)) {
        peer.close();
        this.peers.delete(id);
      }
    }
    for (const [id, a] of wanted) {
      const peer = this.peers.get(id);
      if (peer) peer.setAddress(a);
      else this.peers.set(id, new OutboundPeer(a, this));
    }
  }

  /** Sends a batch; messages to one peer go out in one corked write. */
  send(messages: Message[]): void {
    const touched = new Set<OutboundPeer>();
    for (const m of messages) {
      const peer = this.peers.get(m.to);
      if (!peer) continue;
      if (!touched.has(peer)) {
        touched.add(peer);
        peer.cork();
      }
      peer.send(encodeMessageParts(m));
    }
    for (const p of touched) p.uncork();
  }

  /** Sends a snapshot chunk with backpressure; false if the stream has to be abandoned. */
  async sendChunk(chunk: SnapshotChunk, timeoutMs = 30_000): Promise<boolean> {
    const peer = this.peers.get(chunk.to);
    if (!peer) return false;
    return peer.sendReliably(encodeSnapshotChunk(chunk), timeoutMs);
  }

  get tlsOptions(): PeerTransportOptions['tls'] {
    return this.opts.tls;
  }

  refused(reason: string): void {
    this.opts.onRefused?.(reason);
  }

  private accept(socket: Socket): void {
    if (this.handshaking.size >= handshakingMax) {
      const oldest = this.handshaking.values().next().value!;
      this.handshaking.delete(oldest);
      oldest.destroy();
    }
    if (this.inbound.size >= inboundConnectionsMax) {
      socket.destroy();
      return;
    }
    this.handshaking.add(socket);
    socket.setNoDelay(true);
    const challenge = randomBytes(challengeBytes);
    socket.write(Buffer.concat([magic, challenge]));
    const input = new ByteQueue();
    let peerId: NodeId | null = null;
    let frameLength = 0;
    const timeout = setTimeout(() => {
      this.refused('a peer did not finish the handshake in time');
      socket.destroy();
    }, handshakeTimeoutMs);
    const fail = (reason: string) => {
      this.refused(reason);
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      input.push(chunk);
      if (peerId === null) {
        const proof = input.take(4 + challengeBytes + macBytes);
        if (!proof) {
          if (input.length > 4 + challengeBytes + macBytes) fail('oversized handshake');
          return;
        }
        const id = proof.readUInt32BE(0);
        const clientChallenge = proof.subarray(4, 4 + challengeBytes);
        const expected = mac(this.secret, 'client', challenge, id);
        if (id === 0 || !macEqual(proof.subarray(4 + challengeBytes), expected)) return fail('a peer without the cluster secret was refused');
        peerId = id;
        clearTimeout(timeout);
        this.handshaking.delete(socket);
        this.inbound.add(socket);
        const head = Buffer.alloc(4);
        head.writeUInt32BE(this.selfId);
        socket.write(Buffer.concat([head, mac(this.secret, 'server', clientChallenge, this.selfId)]));
      }
      // Frames: [u32 length][body]. A body is taken only once all of it is here (one copy).
      for (;;) {
        if (frameLength === 0) {
          const lenBytes = input.take(4);
          if (!lenBytes) return;
          frameLength = lenBytes.readUInt32BE(0);
          if (frameLength === 0 || frameLength > frameBytesMax) return fail(`peer ${peerId} sent a frame of ${frameLength} bytes`);
        }
        const body = input.take(frameLength);
        if (!body) return;
        frameLength = 0;
        let m: PeerFrame;
        try {
          m = decodeFrame(body);
        } catch (e) {
          return fail(`peer ${peerId} sent a malformed frame: ${(e as FrameError).message}`);
        }
        if (m.from !== peerId || m.to !== this.selfId) return fail(`peer ${peerId} sent a message as ${m.from} to ${m.to}`);
        this.opts.onMessage(m);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timeout);
      this.handshaking.delete(socket);
      this.inbound.delete(socket);
    });
  }

  async close(): Promise<void> {
    for (const p of this.peers.values()) p.close();
    for (const s of this.inbound) s.destroy();
    for (const s of this.handshaking) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
