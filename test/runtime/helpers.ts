/**
 * Runtime attestation test harness: an IMA measurement list built here (ima-ng entries, the
 * sha256 per-bank binary format the kernel writes) whose template hashes are extended into the
 * swtpm's PCR 10 in every active bank, as the kernel does: list and PCR 10 agree. Entry 0 is
 * boot_aggregate over the swtpm's sha256 PCRs 0–9.
 */
import { createHash } from 'node:crypto';
import type { Tpm } from '../../src/tpm/tpm.ts';
import { PCR_Extend, getPCRBanks, readPCRs } from '../../src/tpm/commands/pcr.ts';
import { HASH_INFO, TPM_ALG } from '../../src/tpm/constants.ts';
import { RUNTIME_POLICY_FORMAT } from '../../src/ima/policy.ts';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** ima-ng template data: d-ng ("sha256:\0" ‖ digest) and n-ng (path ‖ NUL), each u32-length-prefixed. */
export function imaNgData(path: string, digest: Buffer, algo = 'sha256'): Buffer {
  const d = Buffer.concat([Buffer.from(`${algo}:\0`, 'latin1'), digest]);
  const n = Buffer.from(`${path}\0`, 'utf8');
  return Buffer.concat([u32(d.length), d, u32(n.length), n]);
}

/** One binary-list entry of the sha256 per-bank file (PCR 10, sha256 template hash). */
export function binaryEntry(data: Buffer, templateHash: Buffer = createHash('sha256').update(data).digest(), name = 'ima-ng'): Buffer {
  return Buffer.concat([u32(10), templateHash, u32(name.length), Buffer.from(name), u32(data.length), data]);
}

export const fileDigest = (content: string | Buffer): Buffer => createHash('sha256').update(content).digest();

export interface ImaEntrySpec {
  path: string;
  digest: Buffer;
  data: Buffer;
  bytes: Buffer;
}

/** A machine's IMA: the list (sha256 per-bank binary format) and PCR 10 kept in step. */
export class ImaLog {
  readonly entries: ImaEntrySpec[] = [];
  constructor(private tpm: Tpm) {}

  static async start(tpm: Tpm): Promise<ImaLog> {
    const l = new ImaLog(tpm);
    await l.bootAggregate();
    return l;
  }

  setTpm(tpm: Tpm): void {
    this.tpm = tpm;
  }

  /** Entry 0: boot_aggregate = sha256(sha256 PCRs 0..9), as a 5.x+ kernel with a sha256 bank. */
  async bootAggregate(): Promise<void> {
    const v = await readPCRs(this.tpm, [{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }]);
    const h = createHash('sha256');
    for (let i = 0; i <= 9; i++) h.update(v.get('sha256')!.get(i)!);
    await this.add('boot_aggregate', h.digest());
  }

  /** Measures a file (its content's sha256) into the list and PCR 10. */
  async measure(path: string, content: string | Buffer): Promise<ImaEntrySpec> {
    return this.add(path, fileDigest(content));
  }

  async add(path: string, digest: Buffer): Promise<ImaEntrySpec> {
    const data = imaNgData(path, digest);
    const e = { path, digest, data, bytes: binaryEntry(data) };
    this.entries.push(e);
    const banks = (await getPCRBanks(this.tpm)).filter((b) => b.pcrs.includes(10) && HASH_INFO.has(b.hash));
    await PCR_Extend(this.tpm, { pcrHandle: 10, digests: banks.map((b) => ({ hashAlg: b.hash, digest: createHash(HASH_INFO.get(b.hash)!.name).update(data).digest() })) });
    return e;
  }

  bytes(): Buffer {
    return Buffer.concat(this.entries.map((e) => e.bytes));
  }
}

/** A bootkey runtime policy allowing exactly these path → contents (and boot_aggregate by exclude-free listing). */
export function runtimePolicy(files: Record<string, string | Buffer>, extra: { excludes?: string[]; bootAggregate?: Buffer } = {}): string {
  const digests: Record<string, string[]> = {};
  for (const [p, c] of Object.entries(files)) digests[p] = [`sha256:${fileDigest(c).toString('hex')}`];
  if (extra.bootAggregate) digests.boot_aggregate = [`sha256:${extra.bootAggregate.toString('hex')}`];
  return JSON.stringify({ format: RUNTIME_POLICY_FORMAT, version: 1, digests, excludes: extra.excludes ?? [], keyrings: {}, ignoredKeyrings: [], imaBuf: {}, verificationKeys: [] });
}
