// Goal: the WebSocket frames Herald builds itself (TextFrameBatch, one write per batch) are frames a
// real client reads as the text messages put in, at every length encoding RFC 6455 has (7-bit,
// 16-bit and 64-bit lengths), several to a write.
// Method: the bytes of a batch go through ws's own Receiver, as a client's socket would feed them.
import { describe, expect, test } from 'vitest';
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import { TextFrameBatch } from '../../src/delivery/ws-socket.js';
import type { WireBuffer } from '../../src/http/wire-buffer.js';

// ws's own frame parser, which its client sockets use (@types/ws does not declare it).
const Receiver = (createRequire(import.meta.url)('ws') as { Receiver: new (options: object) => Writable }).Receiver;

function receive(bytes: Buffer): Promise<{ text: string; isBinary: boolean }[]> {
  const got: { text: string; isBinary: boolean }[] = [];
  // A client's receiver: frames from a server are not masked.
  const receiver = new Receiver({ isServer: false, maxPayload: 0 });
  receiver.on('message', (data: Buffer, isBinary: boolean) => got.push({ text: data.toString('utf8'), isBinary }));
  return new Promise((resolve, reject) => {
    receiver.on('error', reject);
    // Fed in uneven pieces, as TCP may cut them.
    for (let i = 0; i < bytes.length; i += 7919) receiver.write(bytes.subarray(i, i + 7919));
    receiver.end(() => resolve(got));
  });
}

const writeText = (w: WireBuffer, s: string) => w.text(s);

describe('TextFrameBatch', () => {
  test('frames of every length encoding, in one buffer, read back as the texts put in', async () => {
    const lengths = [0, 1, 125, 126, 127, 65_535, 65_536, 300_000];
    const texts = lengths.map((n, i) => (i % 2 === 0 ? 'x' : 'é').repeat(i % 2 === 0 ? n : Math.floor(n / 2)));
    texts.push('{"type":"message","data":"😀"}');
    const batch = new TextFrameBatch(16);
    for (const t of texts) batch.add(writeText, t);
    expect(batch.frames).toBe(texts.length);
    const got = await receive(batch.bytes());
    expect(got.map((g) => g.isBinary)).toEqual(texts.map(() => false));
    expect(got.map((g) => g.text)).toEqual(texts);
  });
});
