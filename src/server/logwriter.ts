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

/** Bounded: past this many pending bytes the batch is written at once. */
const MAX_PENDING = 64 * 1024;

export function batchedLog(out: NodeJS.WritableStream = process.stdout): LogWriter {
  let pending: string[] = [];
  let bytes = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (!pending.length) return;
    const text = pending.join('');
    pending = [];
    bytes = 0;
    // process.stdout: synchronous for files and pipes on Linux, ordered in any case
    out.write(text);
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
