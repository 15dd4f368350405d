/** Shared helpers of the TPM suites (not a test file): transports that wrap a real swtpm. */
import { openTransport, type Transport } from '../../src/tpm/transport.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import type { Swtpm } from '../helpers/swtpm.ts';

/** A transport that records every command and response and can rewrite responses. */
export interface Capture extends Transport {
  commands: Buffer[];
  responses: Buffer[];
  /** When set, applied to each real response before it is returned. */
  corrupt?: (rsp: Buffer, cmd: Buffer) => Buffer;
}

export async function capturing(sw: Swtpm): Promise<Capture> {
  const inner = await openTransport(sw.tcti);
  const c: Capture = {
    commands: [],
    responses: [],
    async send(cmd) {
      const b = Buffer.from(cmd);
      c.commands.push(b);
      let rsp = await inner.send(b);
      c.responses.push(rsp);
      if (c.corrupt) rsp = c.corrupt(rsp, b);
      return rsp;
    },
    close: () => inner.close(),
  };
  return c;
}

export async function openCaptured(sw: Swtpm): Promise<{ tpm: Tpm; cap: Capture }> {
  const cap = await capturing(sw);
  const tpm = new Tpm(cap);
  opened.push(tpm);
  return { tpm, cap };
}

export function contains(bufs: Buffer[], needle: Buffer): boolean {
  return bufs.some((b) => b.indexOf(needle) >= 0);
}

/** Splits a tpm2-tools credential file (magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET). */
export function parseCredFile(b: Buffer): { credentialBlob: Buffer; secret: Buffer } {
  const n1 = b.readUInt16BE(8);
  const credentialBlob = b.subarray(10, 10 + n1);
  const n2 = b.readUInt16BE(10 + n1);
  return { credentialBlob, secret: b.subarray(12 + n1, 12 + n1 + n2) };
}

const opened: Tpm[] = [];
/** Opens our Tpm on the swtpm and remembers it, so closeAll() can release the connection
 *  after a failed test (swtpm serves one client at a time). */
export async function openTracked(sw: Swtpm): Promise<Tpm> {
  const t = await Tpm.open(sw.tcti);
  opened.push(t);
  return t;
}
export async function closeAll(): Promise<void> {
  for (const t of opened.splice(0)) await t.close().catch(() => undefined);
}
