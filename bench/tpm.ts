/**
 * TPM operation timings (ms per op, median of N) against a fresh swtpm: CreatePrimary of the
 * RSA and ECC EKs (low-range templates) and of the AK, Quote, ActivateCredential (through a
 * salted, encrypted EK policy session, session set-up included) and Unseal of an imported
 * PCR-sealed secret (Import + Load + salted PolicyPCR session + Unseal).
 * Run standalone: node --import tsx bench/tpm.ts
 */
import { startSwtpm } from '../test/helpers/swtpm.ts';
import { Tpm } from '../src/tpm/tpm.ts';
import { TPM_ALG } from '../src/tpm/constants.ts';
import { getEK, createAK, flushKey, activateCredential, unsealImported } from '../src/tpm/keys.ts';
import { quotePCRs } from '../src/tpm/commands/attest.ts';
import { Quote } from '../src/tpm/commands/attest.ts';
import { readPCRs } from '../src/tpm/commands/pcr.ts';
import { makeCredential } from '../src/tpm/credential.ts';
import { createImportBlob } from '../src/tpm/duplicate.ts';

async function time(n: number, fn: () => Promise<void>): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return Math.round(t[t.length >> 1] * 100) / 100;
}

export async function benchTpm(): Promise<Record<string, number>> {
  const sw = await startSwtpm();
  const tpm = await Tpm.open(sw.tcti);
  const out: Record<string, number> = {};
  try {
    out['CreatePrimary EK RSA 2048 (ms)'] = await time(5, async () => flushKey(tpm, await getEK(tpm, 'rsa', { persistent: false })));
    out['CreatePrimary EK ECC P-256 (ms)'] = await time(10, async () => flushKey(tpm, await getEK(tpm, 'ecc', { persistent: false })));
    out['CreatePrimary AK ECC P-256 (ms)'] = await time(10, async () => flushKey(tpm, await createAK(tpm, 'ecc')));
    out['CreatePrimary AK RSA 2048 (ms)'] = await time(5, async () => flushKey(tpm, await createAK(tpm, 'rsa')));
    const sel = [{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];
    const ak = await createAK(tpm, 'ecc');
    const ek = await getEK(tpm, 'ecc', { persistent: false });
    try {
      out['Quote ECDSA P-256, 8 PCRs (ms)'] = await time(20, async () => {
        await Quote(tpm, { signHandle: { handle: ak.handle, name: ak.name }, qualifyingData: Buffer.alloc(32, 1), PCRselect: sel });
      });
      out['Quote + PCR_Read check, 8 PCRs (ms)'] = await time(20, async () => {
        await quotePCRs(tpm, ak, { selection: sel, nonce: Buffer.alloc(32, 1) });
      });
      const cred = makeCredential(ek.public, ak.name, Buffer.alloc(32, 7));
      out['ActivateCredential ECC EK, salted+encrypted (ms)'] = await time(10, async () => {
        await activateCredential(tpm, { ak, ek, ...cred, pinnedEK: ek.public });
      });
      const values = await readPCRs(tpm, sel);
      const blob = createImportBlob(ek.public, Buffer.alloc(32, 9), { pcrs: { selection: sel, values } });
      out['Import+Load+Unseal ECC EK, salted+encrypted (ms)'] = await time(10, async () => {
        await unsealImported(tpm, { ek, pinnedEK: ek.public, pcrs: sel, objectPublic: blob.public.subarray(2), duplicate: blob.duplicate.subarray(2), inSymSeed: blob.inSymSeed.subarray(2) });
      });
    } finally {
      await flushKey(tpm, ak);
      await flushKey(tpm, ek);
    }
    const rek = await getEK(tpm, 'rsa', { persistent: false });
    const rak = await createAK(tpm, 'ecc');
    try {
      const cred = makeCredential(rek.public, rak.name, Buffer.alloc(32, 7));
      out['ActivateCredential RSA EK, salted+encrypted (ms)'] = await time(10, async () => {
        await activateCredential(tpm, { ak: rak, ek: rek, ...cred, pinnedEK: rek.public });
      });
    } finally {
      await flushKey(tpm, rak);
      await flushKey(tpm, rek);
    }
  } finally {
    await tpm.close();
    await sw.stop();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchTpm();
  for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(52)} ${v}`);
}
