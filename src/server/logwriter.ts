/**
 * The server's log writer: one `key=value` line per event, written in batches (one write(2) per
 * turn of the event loop instead of one per line: under a boot storm a release logs two lines,
 * and a write to a pipe or journald's socket costs more than formatting them). Lines keep their
 * order; whatever is pending is written at exit and by flush().
 * @module
 */

export interface LogWriter {
  (line: string): void;
  /** Writes the pending lines now (synchronously). */
  flush(): void;
}

/** Linux's PIPE_BUF: a write to a pipe of at most this many bytes is never interleaved with another's. */
const PIPE_BUF = 4096;

/** Bounded: past this many pending bytes the batch is written at once. */
const MAX_PENDING = 64 * 1024;

export function batchedLog(out: NodeJS.WritableStream = process.stdout): LogWriter {
  let pending: string[] = [];
  let bytes = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (!pending.length) return;
    const lines = pending;
    pending = [];
    bytes = 0;
    // process.stdout: synchronous for files and pipes on Linux, ordered in any case. Writes of
    // at most PIPE_BUF bytes, cut at line ends: the workers of `--workers N` share one pipe, and
    // only a write(2) of at most PIPE_BUF is atomic there, so their lines never interleave.
    let chunk = '';
    for (const l of lines) {
      if (chunk && Buffer.byteLength(chunk) + Buffer.byteLength(l) > PIPE_BUF) {
        out.write(chunk);
        chunk = '';
      }
      chunk += l;
    }
    if (chunk) out.write(chunk);
  };
  const log = ((line: string) => {
    pending.push(line + '\n');
    bytes += line.length + 1;
    if (bytes >= MAX_PENDING) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  }) as LogWriter;
  log.flush = flush;
  process.on('exit', flush);
  return log;
}
