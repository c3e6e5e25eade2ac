// A raw HTTP/1.1 client for the bad-input tests, for bodies the server refuses before reading them.
import { once } from 'node:events';
import net from 'node:net';

/**
 * One HTTP/1.1 request over a plain socket, for bodies the server may refuse before reading them
 * (413). It asks `expect: 100-continue` (as curl does for big bodies) and sends the body only after
 * the server's 100 and a short grace, in pieces, stopping once the answer is in. A client that
 * writes the body at once races the server's close: the server answers 413 and closes with the
 * body unread, the kernel resets the connection, and the client often gets EPIPE/ECONNRESET instead
 * of the 413 (a server-side robustness issue, not what these tests are about).
 */
export function sendOverSocket(
  base: string,
  method: string,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
  timeoutMs = 20_000,
): Promise<{ status: number; text: string; headers: Record<string, string> }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    let received = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(() => settle(new Error(`no answer within ${timeoutMs} ms (hang)`)), timeoutMs);
    const settle = (result: Error | { status: number; text: string; headers: Record<string, string> }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const parse = (final: boolean) => {
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const lines = received.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1]);
      const hdrs: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) hdrs[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      let rest = received.subarray(end + 4);
      if (method === 'HEAD' || status === 204 || status === 304) {
        rest = Buffer.alloc(0);
      } else if (hdrs['content-length'] !== undefined) {
        const n = Number(hdrs['content-length']);
        if (rest.length < n) return undefined;
        rest = rest.subarray(0, n);
      } else if (/chunked/i.test(hdrs['transfer-encoding'] ?? '')) {
        const parts: Buffer[] = [];
        let at = 0;
        for (;;) {
          const lineEnd = rest.indexOf('\r\n', at);
          if (lineEnd < 0) return undefined;
          const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16);
          if (size === 0) break;
          if (rest.length < lineEnd + 2 + size) return undefined;
          parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
          at = lineEnd + 2 + size + 2;
        }
        rest = Buffer.concat(parts);
      } else if (!final) {
        return undefined; // the body ends with the connection
      }
      return { status, text: rest.toString('utf8'), headers: hdrs };
    };
    let goAhead = () => {};
    const mayWrite = new Promise<void>((r) => (goAhead = r));
    sock.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      // An interim 100 Continue: the server wants the body (after a grace in which a final answer wins).
      while (/^HTTP\/1\.[01] 100 /.test(received.subarray(0, 16).toString('latin1')) && received.includes('\r\n\r\n')) {
        received = received.subarray(received.indexOf('\r\n\r\n') + 4);
        setTimeout(goAhead, 100);
      }
      const r = parse(false);
      if (r) settle(r);
    });
    sock.on('error', () => {
      /* EPIPE or a reset: whatever answer arrived is judged on close */
    });
    sock.on('close', () => settle(parse(true) ?? new Error(`connection closed without an answer (${received.length} bytes)`)));
    sock.on('connect', async () => {
      const head = [`${method} ${path} HTTP/1.1`, `host: ${u.host}`, 'connection: close', `content-length: ${body.length}`];
      if (body.length > 0) head.push('expect: 100-continue');
      for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
      sock.write(head.join('\r\n') + '\r\n\r\n', 'latin1');
      const closed = new Promise<void>((r) => sock.once('close', () => r()));
      if (body.length > 0) await Promise.race([mayWrite, closed, new Promise((r) => setTimeout(r, 2000))]);
      for (let at = 0; at < body.length && !settled && !sock.destroyed; at += 64 * 1024) {
        if (!sock.write(body.subarray(at, at + 64 * 1024))) await Promise.race([once(sock, 'drain').catch(() => {}), closed]);
      }
    });
  });
}
