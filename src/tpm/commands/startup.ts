/**
 * Start-up, testing, random numbers and capabilities: Part 3 §9 (Startup), §16.1
 * (GetRandom), §30.2 (GetCapability).
 * @module
 */
import { TPM_CAP, TPM_CC, TPM_PT, TPM_SU, TPMA_PERMANENT } from '../constants.ts';
import { TpmError } from '../errors.ts';
import { Reader, Writer } from '../marshal.ts';
import { readPCRSelection, type TPMSPCRSelection } from '../structures.ts';
import type { Tpm } from '../tpm.ts';

/** TPM2_Startup, Part 3 §9.3. Prefer Tpm.startup(), which accepts TPM_RC_INITIALIZE. */
export async function Startup(tpm: Tpm, req: { startupType?: number } = {}): Promise<void> {
  await tpm.execute({ cc: TPM_CC.Startup, handles: [], params: new Writer().u16(req.startupType ?? TPM_SU.CLEAR).finish() });
}

/** TPM2_GetRandom, Part 3 §16.1: up to bytesRequested bytes (the TPM may return fewer; loop for more). */
export async function GetRandom(tpm: Tpm, req: { bytesRequested: number }): Promise<{ randomBytes: Buffer }> {
  const out: Buffer[] = [];
  let have = 0;
  while (have < req.bytesRequested) {
    const n = Math.min(req.bytesRequested - have, 64);
    const { params } = await tpm.execute({ cc: TPM_CC.GetRandom, handles: [], params: new Writer().u16(n).finish(), encryptable: true });
    const b = params.tpm2b('TPM2B_DIGEST randomBytes', 64);
    params.done();
    if (b.length === 0) throw new TpmError('MARSHAL', 'TPM2_GetRandom: the TPM returned no bytes');
    out.push(b);
    have += b.length;
  }
  return { randomBytes: Buffer.concat(out).subarray(0, req.bytesRequested) };
}

/** TPMS_CAPABILITY_DATA, Part 2 §10.10.2 (the members bootkey reads). */
export type TPMSCapabilityData =
  | { capability: typeof TPM_CAP.ALGS; algorithms: { alg: number; algProperties: number }[] }
  | { capability: typeof TPM_CAP.HANDLES; handles: number[] }
  | { capability: typeof TPM_CAP.COMMANDS; commands: number[] }
  | { capability: typeof TPM_CAP.PCRS; assignedPCR: TPMSPCRSelection[] }
  | { capability: typeof TPM_CAP.TPM_PROPERTIES; tpmProperty: { property: number; value: number }[] }
  | { capability: typeof TPM_CAP.ECC_CURVES; eccCurves: number[] };

function readCapabilityData(r: Reader): TPMSCapabilityData {
  const capability = r.u32('TPMS_CAPABILITY_DATA.capability');
  switch (capability) {
    case TPM_CAP.ALGS: {
      const n = r.count('TPML_ALG_PROPERTY', 256);
      const algorithms = [];
      for (let i = 0; i < n; i++) algorithms.push({ alg: r.u16('TPMS_ALG_PROPERTY.alg'), algProperties: r.u32('TPMS_ALG_PROPERTY.algProperties') });
      return { capability, algorithms };
    }
    case TPM_CAP.HANDLES: {
      const n = r.count('TPML_HANDLE', 256);
      const handles = [];
      for (let i = 0; i < n; i++) handles.push(r.u32('TPM_HANDLE'));
      return { capability, handles };
    }
    case TPM_CAP.COMMANDS: {
      const n = r.count('TPML_CCA', 512);
      const commands = [];
      for (let i = 0; i < n; i++) commands.push(r.u32('TPMA_CC'));
      return { capability, commands };
    }
    case TPM_CAP.PCRS:
      return { capability, assignedPCR: readPCRSelection(r) };
    case TPM_CAP.TPM_PROPERTIES: {
      const n = r.count('TPML_TAGGED_TPM_PROPERTY', 256);
      const tpmProperty = [];
      for (let i = 0; i < n; i++) tpmProperty.push({ property: r.u32('TPMS_TAGGED_PROPERTY.property'), value: r.u32('TPMS_TAGGED_PROPERTY.value') });
      return { capability, tpmProperty };
    }
    case TPM_CAP.ECC_CURVES: {
      const n = r.count('TPML_ECC_CURVE', 64);
      const eccCurves = [];
      for (let i = 0; i < n; i++) eccCurves.push(r.u16('TPM_ECC_CURVE'));
      return { capability, eccCurves };
    }
    default:
      return r.fail('TPMS_CAPABILITY_DATA.capability', `capability 0x${capability.toString(16)} is not handled`);
  }
}

/** TPM2_GetCapability, Part 3 §30.2 (one call; see getCapabilityAll for moreData). */
export async function GetCapability(tpm: Tpm, req: { capability: number; property: number; propertyCount: number }): Promise<{ moreData: boolean; capabilityData: TPMSCapabilityData }> {
  const { params } = await tpm.execute({
    cc: TPM_CC.GetCapability,
    handles: [],
    params: new Writer().u32(req.capability).u32(req.property).u32(req.propertyCount).finish(),
  });
  const moreData = params.u8('TPMI_YES_NO moreData') !== 0;
  const capabilityData = readCapabilityData(params);
  params.done();
  if (capabilityData.capability !== req.capability) {
    throw new TpmError('MARSHAL', `TPM2_GetCapability: asked for capability ${req.capability}, got ${capabilityData.capability}`);
  }
  return { moreData, capabilityData };
}

/** All handles of one type (TPM_HT << 24), following moreData. */
export async function getHandles(tpm: Tpm, first: number): Promise<number[]> {
  const out: number[] = [];
  let property = first;
  for (let guard = 0; guard < 64; guard++) {
    const { moreData, capabilityData } = await GetCapability(tpm, { capability: TPM_CAP.HANDLES, property, propertyCount: 64 });
    if (capabilityData.capability !== TPM_CAP.HANDLES) break;
    const hs = capabilityData.handles.filter((h) => h >>> 24 === first >>> 24);
    out.push(...hs);
    if (!moreData || hs.length === 0) break;
    property = hs[hs.length - 1] + 1;
  }
  return out;
}

/** TPM properties from `first` (TPM_PT), following moreData, as a map. */
export async function getProperties(tpm: Tpm, first: number, count = 64): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  let property = first;
  for (let guard = 0; guard < 16 && out.size < count; guard++) {
    const { moreData, capabilityData } = await GetCapability(tpm, { capability: TPM_CAP.TPM_PROPERTIES, property, propertyCount: count - out.size });
    if (capabilityData.capability !== TPM_CAP.TPM_PROPERTIES || capabilityData.tpmProperty.length === 0) break;
    for (const p of capabilityData.tpmProperty) out.set(p.property, p.value);
    if (!moreData) break;
    property = capabilityData.tpmProperty[capabilityData.tpmProperty.length - 1].property + 1;
  }
  return out;
}

/** The dictionary-attack state (Part 1 §19.8.6; TPM_PT_LOCKOUT_* and TPMA_PERMANENT.inLockout). */
export interface DictionaryAttackState {
  /** TPM_PT_LOCKOUT_COUNTER: authorization failures (and non-orderly shutdowns after a DA-protected use) counted. */
  lockoutCounter: number;
  /** TPM_PT_MAX_AUTH_FAIL: the count at which the TPM is in lockout. */
  maxAuthFail: number;
  /** TPM_PT_LOCKOUT_INTERVAL: seconds of powered-on time per recovered failure. */
  lockoutInterval: number;
  /** TPM_PT_LOCKOUT_RECOVERY: seconds before lockoutAuth may be tried again after a failure. */
  lockoutRecovery: number;
  /** TPMA_PERMANENT.inLockout: DA-protected objects refuse authorization (TPM_RC_LOCKOUT). */
  inLockout: boolean;
}

/** Reads the dictionary-attack state with TPM2_GetCapability(TPM_PROPERTIES, PT_VAR). */
export async function getDictionaryAttackState(tpm: Tpm): Promise<DictionaryAttackState> {
  const p = await getProperties(tpm, TPM_PT.PERMANENT, TPM_PT.LOCKOUT_RECOVERY - TPM_PT.PERMANENT + 1);
  return {
    lockoutCounter: p.get(TPM_PT.LOCKOUT_COUNTER) ?? 0,
    maxAuthFail: p.get(TPM_PT.MAX_AUTH_FAIL) ?? 0,
    lockoutInterval: p.get(TPM_PT.LOCKOUT_INTERVAL) ?? 0,
    lockoutRecovery: p.get(TPM_PT.LOCKOUT_RECOVERY) ?? 0,
    inLockout: ((p.get(TPM_PT.PERMANENT) ?? 0) & TPMA_PERMANENT.inLockout) !== 0,
  };
}
