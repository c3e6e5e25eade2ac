/**
 * A growable byte buffer that answers (pull bodies, push bodies, WebSocket frames) are written
 * straight into. Building the bytes ourselves lets a message's stored data go out as it is stored
 * — copied, not decoded to a string, escaped and encoded back — and a whole batch leave in one write
 * instead of one long string the socket must flatten and encode.
 */
export class WireBuffer {
  private buf: Buffer;
  private off = 0;

  constructor(capacityBytes = 4096) {
    this.buf = Buffer.allocUnsafe(Math.max(64, capacityBytes));
  }

  get length(): number {
    return this.off;
  }

  /** Empties it for reuse (the bytes handed out by `view` are overwritten from here on). */
  reset(): void {
    this.off = 0;
  }

  /** Text, UTF-8 encoded. */
  text(s: string): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8: with that much room the write is whole.
    // Short of it, count the bytes rather than grow for the worst case (mostly ASCII: one each).
    if (this.off + s.length * 3 > this.buf.length) this.ensure(Buffer.byteLength(s));
    this.off += this.buf.write(s, this.off);
  }

  /** Text known to be ASCII (numbers, ids, base64): one byte per character. */
  ascii(s: string): void {
    this.ensure(s.length);
    this.off += this.buf.write(s, this.off, 'latin1');
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.off);
    this.off += b.length;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.off++] = b;
  }

  /**
   * A JSON string literal of UTF-8 text given as bytes: copied as is when nothing in it needs an
   * escape (the usual case), escaped by JSON.stringify otherwise. The bytes must be valid UTF-8, as
   * stored message data is (it was encoded from a string).
   */
  jsonStringOfUtf8(b: Buffer): void {
    if (!needsJsonEscape.test(b.toString('latin1'))) {
      this.jsonStringOfSafeUtf8(b);
    } else {
      this.text(JSON.stringify(b.toString('utf8')));
    }
  }

  /** A JSON string literal of UTF-8 bytes known to need no escape (see PublishItem.jsonSafe). */
  jsonStringOfSafeUtf8(b: Uint8Array): void {
    this.ensure(b.length + 2);
    this.buf[this.off++] = 0x22;
    this.buf.set(b, this.off);
    this.off += b.length;
    this.buf[this.off++] = 0x22;
  }

  /** A JSON string literal of bytes in base64. */
  jsonStringOfBase64(b: Buffer): void {
    this.byte(0x22);
    this.ascii(b.toString('base64'));
    this.byte(0x22);
  }

  /** Leaves `n` bytes to be filled in later (`setByte`); returns where they start. */
  reserve(n: number): number {
    this.ensure(n);
    const at = this.off;
    this.off += n;
    return at;
  }

  setByte(at: number, b: number): void {
    this.buf[at] = b;
  }

  /** Moves the bytes from `from` to the end by `delta` (either way), e.g. to fit a header in. */
  shift(from: number, delta: number): void {
    if (delta > 0) this.ensure(delta);
    this.buf.copyWithin(from + delta, from, this.off);
    this.off += delta;
  }

  /** The bytes written so far, sharing memory with this buffer (valid until the next write or reset;
   * once handed off to a socket, write no more). */
  written(): Buffer {
    return this.buf.subarray(0, this.off);
  }

  private ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(bigger, 0, 0, this.off);
    this.buf = bigger;
  }
}

/**
 * What JSON must escape in a string: the quote, the backslash and control characters. Tested on the
 * bytes read as Latin-1, so every byte is one character; UTF-8's multi-byte sequences (0x80 and up)
 * need no escape. Checking this way costs under a microsecond per KiB.
 */
const needsJsonEscape = /[\u0000-\u001f"\\]/;
