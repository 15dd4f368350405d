/**
 * NV storage: Part 3 §31.6 (NV_ReadPublic), §31.13 (NV_Read); readNV reads a whole index in
 * chunks of at most TPM_PT_NV_BUFFER_MAX bytes.
 * @module
 */
import { TPM_CC, TPM_PT, TPM_RH } from '../constants.ts';
import { TpmError } from '../errors.ts';
import { Writer } from '../marshal.ts';
import type { AuthHandle, Tpm } from '../tpm.ts';
import type { Session } from '../session.ts';
import { getProperties } from './startup.ts';

/** TPMS_NV_PUBLIC, Part 2 §13.5. */
export interface TPMSNVPublic {
  nvIndex: number;
  nameAlg: number;
  attributes: number;
  authPolicy: Buffer;
  dataSize: number;
}

/** TPM2_NV_ReadPublic, Part 3 §31.6. */
export async function NV_ReadPublic(tpm: Tpm, req: { nvIndex: number }): Promise<{ nvPublic: TPMSNVPublic; nvName: Buffer }> {
  const { params: r } = await tpm.execute({ cc: TPM_CC.NV_ReadPublic, handles: [req.nvIndex], params: Buffer.alloc(0) });
  const nvPublic = r.sized('TPM2B_NV_PUBLIC', (s) => ({
    nvIndex: s.u32('TPMS_NV_PUBLIC.nvIndex'),
    nameAlg: s.u16('TPMS_NV_PUBLIC.nameAlg'),
    attributes: s.u32('TPMS_NV_PUBLIC.attributes'),
    authPolicy: s.tpm2b('TPMS_NV_PUBLIC.authPolicy', 64),
    dataSize: s.u16('TPMS_NV_PUBLIC.dataSize'),
  }));
  const nvName = r.tpm2b('TPM2B_NAME nvName', 68);
  r.done();
  return { nvPublic, nvName };
}

/** TPM2_NV_Read, Part 3 §31.13. */
export async function NV_Read(tpm: Tpm, req: { authHandle: AuthHandle; nvIndex: number | { handle: number; name?: Buffer }; size: number; offset: number }, ...sessions: Session[]): Promise<{ data: Buffer }> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.NV_Read, handles: [{ auth: req.authHandle }, req.nvIndex], params: new Writer().u16(req.size).u16(req.offset).finish(), sessions, encryptable: true,
  });
  const data = r.tpm2b('TPM2B_MAX_NV_BUFFER data', 4096);
  r.done();
  if (data.length !== req.size) throw new TpmError('MARSHAL', `TPM2_NV_Read: asked for ${req.size} bytes, got ${data.length}`);
  return { data };
}

/** TPMA_NV bits used to choose the read authorization, Part 2 §13.4. */
const TPMA_NV_OWNERREAD = 1 << 17;
const TPMA_NV_AUTHREAD = 1 << 18;
const TPMA_NV_PPREAD = 1 << 16;

/**
 * Reads a whole NV index (empty password: the index itself with AUTHREAD, else the owner,
 * else the platform), in chunks of NV_BUFFER_MAX.
 */
export async function readNV(tpm: Tpm, nvIndex: number): Promise<Buffer> {
  const { nvPublic, nvName } = await NV_ReadPublic(tpm, { nvIndex });
  const a = nvPublic.attributes;
  const authHandle: AuthHandle = a & TPMA_NV_AUTHREAD ? { handle: nvIndex, name: nvName } : a & TPMA_NV_OWNERREAD ? { handle: TPM_RH.OWNER } : a & TPMA_NV_PPREAD ? { handle: TPM_RH.PLATFORM } : { handle: nvIndex, name: nvName };
  const props = await getProperties(tpm, TPM_PT.NV_BUFFER_MAX, 1);
  const max = Math.max(64, Math.min(props.get(TPM_PT.NV_BUFFER_MAX) ?? 512, 2048));
  const out: Buffer[] = [];
  for (let off = 0; off < nvPublic.dataSize; off += max) {
    const size = Math.min(max, nvPublic.dataSize - off);
    out.push((await NV_Read(tpm, { authHandle, nvIndex: { handle: nvIndex, name: nvName }, size, offset: off })).data);
  }
  return Buffer.concat(out);
}
