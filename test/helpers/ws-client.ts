/**
 * A WebSocket test client on top of `ws`: collects every JSON frame it receives, waits for frames with
 * a deadline (never a fixed sleep), and reports refused upgrades as HTTP status and JSON body.
 */
import { afterAll, beforeAll } from 'vitest';
import WebSocket, { type ClientOptions } from 'ws';
import { eventually, removeDataDir, startHerald, type HeraldProcess } from './herald-process.js';

export interface Refusal {
  status: number;
  body: any;
  headers: Record<string, string | string[] | undefined>;
}

export function wsUrl(httpBase: string, path: string): string {
  return httpBase.replace(/^http/, 'ws') + path;
}

export class WsClient {
  /** Frames received and not yet taken, in order. */
  readonly frames: any[] = [];
  /** Every frame ever received. */
  readonly all: any[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  pings = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      this.frames.push(frame);
      this.all.push(frame);
    });
    ws.on('ping', () => this.pings++);
    ws.on('error', () => {});
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** Opens a socket; rejects with the refusal when the server answers the upgrade with an error. */
  static open(httpBase: string, path: string, options: ClientOptions = {}): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl(httpBase, path), { handshakeTimeout: 10_000, ...options });
      const client = new WsClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          let body: any = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* keep the text */
          }
          reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { refusal: { status: res.statusCode, body, headers: res.headers } }));
          ws.terminate();
        });
      });
      ws.once('error', reject);
    });
  }

  /** The refusal an upgrade gets (fails the test if it is accepted). */
  static async refusal(httpBase: string, path: string): Promise<Refusal> {
    try {
      const c = await WsClient.open(httpBase, path);
      c.ws.terminate();
    } catch (e) {
      const r = (e as { refusal?: Refusal }).refusal;
      if (r) return r;
      throw e;
    }
    throw new Error(`upgrade of ${path} was accepted`);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  credit(n: number): void {
    this.send({ type: 'credit', n });
  }

  ack(ackIds: string[]): void {
    this.send({ type: 'ack', ackIds });
  }

  /** Waits until `n` frames are there and takes them. */
  async take(n: number, timeoutMs = 10_000): Promise<any[]> {
    await eventually(() => this.frames.length >= n, timeoutMs, 5);
    return this.frames.splice(0, n);
  }

  /** Waits for the next frame of a type, taking it and every frame before it. */
  async next(type: string, timeoutMs = 10_000): Promise<any> {
    const i = await eventually(() => {
      const at = this.frames.findIndex((f) => f.type === type);
      return at >= 0 ? at + 1 : 0;
    }, timeoutMs, 5);
    return this.frames.splice(0, i)[i - 1];
  }

  /**
   * Sends a frame the server answers with an error frame and waits for that answer: frames arrive in
   * order, so anything the server sent before it has arrived too. Returns the frames before it.
   */
  async barrier(timeoutMs = 10_000): Promise<any[]> {
    const marker = `barrier-${Math.random().toString(36).slice(2)}`;
    this.send({ type: marker });
    const i = await eventually(() => {
      const at = this.frames.findIndex((f) => f.type === 'error' && String(f.message).includes(marker));
      return at >= 0 ? at + 1 : 0;
    }, timeoutMs, 5);
    return this.frames.splice(0, i).slice(0, -1);
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

/**
 * One node for a test file, and the sockets its tests open: the node starts before the file's tests;
 * after them every socket is cut, the node stopped and its data removed.
 */
export function heraldWithSockets(): { readonly h: HeraldProcess; readonly url: string; open(path: string, options?: ClientOptions): Promise<WsClient> } {
  let h: HeraldProcess | undefined;
  const clients: WsClient[] = [];
  beforeAll(async () => {
    h = await startHerald();
  });
  afterAll(async () => {
    for (const c of clients) c.ws.terminate();
    if (!h) return;
    await h.stop();
    removeDataDir(h.dataDir);
  });
  const node = () => {
    if (!h) throw new Error('the node is not up: use it inside a test');
    return h;
  };
  return {
    get h() {
      return node();
    },
    get url() {
      return node().url;
    },
    async open(path, options) {
      const c = await WsClient.open(node().url, path, options);
      clients.push(c);
      return c;
    },
  };
}
