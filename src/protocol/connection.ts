/**
 * A message connection over any duplex stream (a TLS socket in production): framed CBOR
 * messages, bounded frames, a timeout per receive. Shared by client and server.
 * @module
 */
import type { Duplex } from 'node:stream';
import { Deframer, frame, MAX_FRAME } from './codec.ts';
import { ProtocolError } from './errors.ts';
import { encodeMessage, parseMessage, type Message, type MessageOf, type MessageType } from './messages.ts';

export class Connection {
  private deframer: Deframer;
  private frames: Buffer[] = [];
  private waiter?: () => void;
  private failure?: Error;
  private ended = false;

  constructor(readonly stream: Duplex, maxFrame = MAX_FRAME) {
    this.deframer = new Deframer(maxFrame);
    stream.on('data', (b: Buffer) => {
      if (this.failure) return; // poisoned: drop whatever else arrives
      try {
        this.deframer.push(b);
        for (let f = this.deframer.next(); f; f = this.deframer.next()) this.frames.push(f);
      } catch (e) {
        // An oversize frame: stop reading, keep the stream writable so the owner can answer
        // with an `error` message before closing.
        this.failure = e as Error;
        this.deframer = new Deframer(0);
        stream.pause();
      }
      this.wake();
    });
    stream.on('end', () => { this.ended = true; this.wake(); });
    stream.on('close', () => { this.ended = true; this.wake(); });
    stream.on('error', (e) => { this.failure ??= e; this.wake(); });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Sends one message; the encoded bytes are zeroed once written (messages may carry shares). */
  send(m: Message): Promise<void> {
    const payload = encodeMessage(m);
    const data = frame(payload);
    payload.fill(0);
    return new Promise((resolve, reject) => {
      if (this.stream.destroyed) {
        data.fill(0);
        return reject(new ProtocolError('CLOSED', 'connection closed'));
      }
      this.stream.write(data, (e) => {
        data.fill(0);
        if (e) reject(new ProtocolError('CLOSED', `send failed: ${e.message}`));
        else resolve();
      });
    });
  }

  /** The next raw frame, or a ProtocolError (TIMEOUT, CLOSED, TOO_LARGE). */
  async receiveFrame(timeoutMs: number): Promise<Buffer> {
    const f = await this.nextFrame(timeoutMs);
    if (!f) throw new ProtocolError('CLOSED', 'connection closed by the peer');
    return f;
  }

  /**
   * The next raw frame, or undefined when the peer closed cleanly between messages (the normal
   * end of every connection on the server: no error object built for it); a ProtocolError
   * (TIMEOUT, CLOSED after a failure, TOO_LARGE) otherwise.
   */
  async nextFrame(timeoutMs: number): Promise<Buffer | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.failure) throw this.failure instanceof ProtocolError ? this.failure : new ProtocolError('CLOSED', `connection failed: ${this.failure.message}`);
      if (this.ended) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) throw new ProtocolError('TIMEOUT', `no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        // setImmediate: when the event loop lags (thousands of connections at once), the timer
        // may come due in the same turn as the frame that arrived in time; the turn's I/O runs
        // before the immediate, so such a frame is taken, not refused as TIMEOUT.
        const t = setTimeout(() => setImmediate(resolve), left);
        this.waiter = () => { clearTimeout(t); resolve(); };
      });
    }
  }

  /** Receives and validates one message of the expected types (or an `error`). */
  async receive<T extends MessageType>(expect: readonly T[], timeoutMs: number): Promise<MessageOf<T | 'error'>> {
    const f = await this.receiveFrame(timeoutMs);
    try {
      return parseMessage(f, expect); // copies every byte field
    } finally {
      f.fill(0);
    }
  }

  close(): void {
    this.stream.end();
    // A peer that neither reads nor closes must not keep the socket: destroy shortly after.
    setTimeout(() => this.stream.destroy(), 1000).unref();
  }
}
