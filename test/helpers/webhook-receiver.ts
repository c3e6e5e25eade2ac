/**
 * A real HTTP receiver on 127.0.0.1 for push tests. Every request is recorded (arrival time, headers,
 * raw body); what it answers is decided per request by `behaviour`, which can return a status with
 * headers, a delay, a hang (no answer until the client gives up) or a connection reset.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface Received {
  atMs: number;
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The JSON body, when it is JSON. */
  json?: any;
}

export type Answer =
  | { status: number; headers?: Record<string, string>; body?: string; delayMs?: number }
  | { hang: true }
  | { reset: true };

export class WebhookReceiver {
  readonly received: Received[] = [];
  behaviour: (r: Received, index: number) => Answer = () => ({ status: 200 });
  /** Requests being answered right now (for in-flight window checks). */
  open = 0;
  maxOpen = 0;
  private server!: Server;
  private sockets = new Set<Socket>();
  url = '';

  static async start(behaviour?: WebhookReceiver['behaviour']): Promise<WebhookReceiver> {
    const r = new WebhookReceiver();
    if (behaviour) r.behaviour = behaviour;
    await r.listen();
    return r;
  }

  private async listen(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const r: Received = { atMs: Date.now(), path: req.url ?? '', headers: req.headers, body };
      if (String(req.headers['content-type']).startsWith('application/json')) {
        try {
          r.json = JSON.parse(body.toString());
        } catch {
          /* not JSON after all */
        }
      }
      const index = this.received.push(r) - 1;
      const answer = this.behaviour(r, index);
      this.open++;
      this.maxOpen = Math.max(this.maxOpen, this.open);
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          this.open--;
        }
      };
      res.once('close', finish);
      if ('reset' in answer) {
        req.socket.destroy();
        return;
      }
      if ('hang' in answer) return; // the client times out and closes
      const send = () => {
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.body ?? '');
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  }

  /** Requests for one subscription (push requests carry `herald-subscription`). */
  for(subscription: string): Received[] {
    return this.received.filter((r) => r.headers['herald-subscription'] === subscription);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
