/**
 * Object and hierarchy commands: Part 3 §24.1 (CreatePrimary), §12.1 (Create), §12.2 (Load),
 * §12.4 (ReadPublic), §12.5 (ActivateCredential), §12.7 (Unseal), §13.3 (Import),
 * §28.8 (FlushContext), §28.5 (EvictControl).
 * @module
 */
import { TPM_CC } from '../constants.ts';
import { TpmError } from '../errors.ts';
import { Reader, Writer } from '../marshal.ts';
import { marshalPublic, readPublic, writePCRSelection, writeSymDef, type TPMSPCRSelection, type TPMTPublic, type TPMTSymDef, SYM_NULL } from '../structures.ts';
import type { AuthHandle, Handle, Tpm } from '../tpm.ts';
import type { Session } from '../session.ts';

/** TPMT_TK_CREATION, Part 2 §10.7.3. */
export interface TPMTTKCreation {
  tag: number;
  hierarchy: number;
  digest: Buffer;
}

function readTicket(r: Reader, what: string): TPMTTKCreation {
  return { tag: r.u16(`${what}.tag`), hierarchy: r.u32(`${what}.hierarchy`), digest: r.tpm2b(`${what}.digest`, 64) };
}

/** TPM2B_PUBLIC read keeping the exact bytes (Names hash them). */
function readPublic2B(r: Reader, what = 'TPM2B_PUBLIC outPublic'): { public: TPMTPublic; publicBytes: Buffer } {
  const start = r.off + 2;
  const p = r.sized(what, readPublic);
  return { public: p, publicBytes: Buffer.from(r.buf.subarray(start, r.off)) };
}

/** TPM2B_SENSITIVE_CREATE, Part 2 §11.1.16. */
function writeSensitiveCreate(w: Writer, s: { userAuth?: Buffer; data?: Buffer } = {}): void {
  const inner = new Writer().tpm2b(s.userAuth ?? Buffer.alloc(0)).tpm2b(s.data ?? Buffer.alloc(0)).finish();
  w.tpm2b(inner);
}

function asAuth(h: AuthHandle | number): AuthHandle {
  return typeof h === 'number' ? { handle: h } : h;
}

export interface CreatePrimaryResponse {
  objectHandle: number;
  outPublic: TPMTPublic;
  /** The TPMT_PUBLIC bytes as the TPM returned them. */
  outPublicBytes: Buffer;
  creationData: Buffer;
  creationHash: Buffer;
  creationTicket: TPMTTKCreation;
  name: Buffer;
}

/** TPM2_CreatePrimary, Part 3 §24.1. */
export async function CreatePrimary(
  tpm: Tpm,
  req: { primaryHandle: AuthHandle | number; inSensitive?: { userAuth?: Buffer; data?: Buffer }; inPublic: TPMTPublic; outsideInfo?: Buffer; creationPCR?: TPMSPCRSelection[] },
  ...sessions: Session[]
): Promise<CreatePrimaryResponse> {
  const w = new Writer();
  writeSensitiveCreate(w, req.inSensitive);
  w.tpm2b(marshalPublic(req.inPublic)).tpm2b(req.outsideInfo ?? Buffer.alloc(0));
  writePCRSelection(w, req.creationPCR ?? []);
  const { handles, params: r } = await tpm.execute({
    cc: TPM_CC.CreatePrimary, handles: [{ auth: asAuth(req.primaryHandle) }], params: w.finish(), sessions, responseHandles: 1, decryptable: true, encryptable: true,
  });
  const pub = readPublic2B(r);
  const creationData = r.tpm2b('TPM2B_CREATION_DATA creationData', 4096);
  const creationHash = r.tpm2b('TPM2B_DIGEST creationHash', 64);
  const creationTicket = readTicket(r, 'TPMT_TK_CREATION creationTicket');
  const name = r.tpm2b('TPM2B_NAME name', 68);
  r.done();
  return { objectHandle: handles[0], outPublic: pub.public, outPublicBytes: pub.publicBytes, creationData, creationHash, creationTicket, name };
}

export interface CreateResponse {
  outPrivate: Buffer;
  outPublic: TPMTPublic;
  outPublicBytes: Buffer;
  creationData: Buffer;
  creationHash: Buffer;
  creationTicket: TPMTTKCreation;
}

/** TPM2_Create, Part 3 §12.1. */
export async function Create(
  tpm: Tpm,
  req: { parentHandle: AuthHandle | number; inSensitive?: { userAuth?: Buffer; data?: Buffer }; inPublic: TPMTPublic; outsideInfo?: Buffer; creationPCR?: TPMSPCRSelection[] },
  ...sessions: Session[]
): Promise<CreateResponse> {
  const w = new Writer();
  writeSensitiveCreate(w, req.inSensitive);
  w.tpm2b(marshalPublic(req.inPublic)).tpm2b(req.outsideInfo ?? Buffer.alloc(0));
  writePCRSelection(w, req.creationPCR ?? []);
  const { params: r } = await tpm.execute({
    cc: TPM_CC.Create, handles: [{ auth: asAuth(req.parentHandle) }], params: w.finish(), sessions, decryptable: true, encryptable: true,
  });
  const outPrivate = r.tpm2b('TPM2B_PRIVATE outPrivate', 4096);
  const pub = readPublic2B(r);
  const creationData = r.tpm2b('TPM2B_CREATION_DATA creationData', 4096);
  const creationHash = r.tpm2b('TPM2B_DIGEST creationHash', 64);
  const creationTicket = readTicket(r, 'TPMT_TK_CREATION creationTicket');
  r.done();
  return { outPrivate, outPublic: pub.public, outPublicBytes: pub.publicBytes, creationData, creationHash, creationTicket };
}

/** TPM2_Load, Part 3 §12.2. */
export async function Load(
  tpm: Tpm,
  req: { parentHandle: AuthHandle | number; inPrivate: Buffer; inPublic: TPMTPublic | Buffer },
  ...sessions: Session[]
): Promise<{ objectHandle: number; name: Buffer }> {
  const pubBytes = Buffer.isBuffer(req.inPublic) ? req.inPublic : marshalPublic(req.inPublic);
  const { handles, params: r } = await tpm.execute({
    cc: TPM_CC.Load, handles: [{ auth: asAuth(req.parentHandle) }], params: new Writer().tpm2b(req.inPrivate).tpm2b(pubBytes).finish(), sessions, responseHandles: 1, decryptable: true,
  });
  const name = r.tpm2b('TPM2B_NAME name', 68);
  r.done();
  return { objectHandle: handles[0], name };
}

/** TPM2_ReadPublic, Part 3 §12.4. */
export async function ReadPublic(tpm: Tpm, req: { objectHandle: number }, ...sessions: Session[]): Promise<{ outPublic: TPMTPublic; outPublicBytes: Buffer; name: Buffer; qualifiedName: Buffer }> {
  const { params: r } = await tpm.execute({ cc: TPM_CC.ReadPublic, handles: [req.objectHandle], params: Buffer.alloc(0), sessions, encryptable: true });
  const pub = readPublic2B(r);
  const name = r.tpm2b('TPM2B_NAME name', 68);
  const qualifiedName = r.tpm2b('TPM2B_NAME qualifiedName', 68);
  r.done();
  return { outPublic: pub.public, outPublicBytes: pub.publicBytes, name, qualifiedName };
}

/** TPM2_ActivateCredential, Part 3 §12.5: activateHandle (ADMIN role) is the AK, keyHandle (USER role) the EK. */
export async function ActivateCredential(
  tpm: Tpm,
  req: { activateHandle: AuthHandle; keyHandle: AuthHandle; credentialBlob: Buffer; secret: Buffer },
  ...sessions: Session[]
): Promise<{ certInfo: Buffer }> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.ActivateCredential,
    handles: [{ auth: req.activateHandle }, { auth: req.keyHandle }],
    params: new Writer().tpm2b(req.credentialBlob).tpm2b(req.secret).finish(),
    sessions, decryptable: true, encryptable: true,
  });
  const certInfo = r.tpm2b('TPM2B_DIGEST certInfo', 64);
  r.done();
  r.buf.fill(0); // the caller holds the only copy of the secret (and zeroes it)
  return { certInfo };
}

/** TPM2_Unseal, Part 3 §12.7. */
export async function Unseal(tpm: Tpm, req: { itemHandle: AuthHandle }, ...sessions: Session[]): Promise<{ outData: Buffer }> {
  const { params: r } = await tpm.execute({ cc: TPM_CC.Unseal, handles: [{ auth: req.itemHandle }], params: Buffer.alloc(0), sessions, encryptable: true });
  const outData = r.tpm2b('TPM2B_SENSITIVE_DATA outData', 128);
  r.done();
  r.buf.fill(0); // the caller holds the only copy of the secret (and zeroes it)
  return { outData };
}

/** TPM2_Import, Part 3 §13.3. */
export async function Import(
  tpm: Tpm,
  req: { parentHandle: AuthHandle | number; encryptionKey?: Buffer; objectPublic: TPMTPublic | Buffer; duplicate: Buffer; inSymSeed: Buffer; symmetricAlg?: TPMTSymDef },
  ...sessions: Session[]
): Promise<{ outPrivate: Buffer }> {
  const pubBytes = Buffer.isBuffer(req.objectPublic) ? req.objectPublic : marshalPublic(req.objectPublic);
  const w = new Writer().tpm2b(req.encryptionKey ?? Buffer.alloc(0)).tpm2b(pubBytes).tpm2b(req.duplicate).tpm2b(req.inSymSeed);
  writeSymDef(w, req.symmetricAlg ?? SYM_NULL);
  const { params: r } = await tpm.execute({ cc: TPM_CC.Import, handles: [{ auth: asAuth(req.parentHandle) }], params: w.finish(), sessions, decryptable: true, encryptable: true });
  const outPrivate = r.tpm2b('TPM2B_PRIVATE outPrivate', 4096);
  r.done();
  return { outPrivate };
}

/** TPM2_FlushContext, Part 3 §28.8 (flushHandle is a parameter, not a handle). */
export async function FlushContext(tpm: Tpm, req: { flushHandle: number }): Promise<void> {
  const { params } = await tpm.execute({ cc: TPM_CC.FlushContext, handles: [], params: new Writer().u32(req.flushHandle).finish() });
  params.done();
}

/** TPM2_EvictControl, Part 3 §28.5: persists a transient object at persistentHandle (or evicts a persistent one). */
export async function EvictControl(tpm: Tpm, req: { auth: AuthHandle | number; objectHandle: Handle; persistentHandle: number }, ...sessions: Session[]): Promise<void> {
  const { params } = await tpm.execute({ cc: TPM_CC.EvictControl, handles: [{ auth: asAuth(req.auth) }, req.objectHandle], params: new Writer().u32(req.persistentHandle).finish(), sessions });
  params.done();
}

/** Flushes handles, ignoring failures (cleanup paths). */
export async function flushAll(tpm: Tpm, handles: Iterable<number>): Promise<void> {
  for (const h of handles) await FlushContext(tpm, { flushHandle: h }).catch(() => undefined);
}

export { TpmError };
