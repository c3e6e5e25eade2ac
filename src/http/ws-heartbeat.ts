/**
 * Server pings: every interval each socket is pinged, and a socket that has not answered the previous
 * ping is terminated. That finds connections that died without a close (a peer that lost power, a
 * NAT that forgot the flow), whose leases would otherwise wait out their ack deadlines.
 */
import { WebSocket } from 'ws';

export class Heartbeat {
  /** Socket → whether it answered since the last ping. */
  private readonly answered = new Map<WebSocket, boolean>();
  private readonly timer: NodeJS.Timeout;

  constructor(intervalMs: number) {
    this.timer = setInterval(() => this.beat(), intervalMs);
    this.timer.unref();
  }

  watch(socket: WebSocket): void {
    this.answered.set(socket, true);
    socket.on('pong', () => {
      if (this.answered.has(socket)) this.answered.set(socket, true);
    });
    socket.once('close', () => this.answered.delete(socket));
  }

  private beat(): void {
    for (const [socket, answered] of this.answered) {
      if (!answered) {
        this.answered.delete(socket);
        socket.terminate(); // its 'close' ends the session and releases what it held
        continue;
      }
      this.answered.set(socket, false);
      if (socket.readyState === WebSocket.OPEN) socket.ping();
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
