/**
 * Small helpers over test/helpers/swtpm.ts for the verifier tests (crypto, credential, quote,
 * duplicate, cli-verify): a work directory per TPM, tpm2-tools calls followed by flushing
 * transient objects (swtpm has no resource manager), and EK/AK creation.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSwtpm, tpm2, type Swtpm } from './swtpm.ts';

export interface ToolTpm {
  tpm: Swtpm;
  dir: string;
  /** Runs a tool in `dir`, then flushes transient objects; returns stdout. */
  run(tool: string, args: string[]): string;
  /** Like run, but returns the error message instead of throwing (undefined on success). */
  fails(tool: string, args: string[]): string | undefined;
  file(name: string): Buffer;
  path(name: string): string;
  /** An EK policy session (PolicySecret(endorsement)) saved as `name`; pass `-P session:name`. */
  ekSession(name?: string): string;
  stop(): Promise<void>;
}

export async function toolTpm(blank = true): Promise<ToolTpm> {
  const tpm = await startSwtpm({ blank });
  const dir = mkdtempSync(join(tmpdir(), 'bootkey-tools-'));
  const flush = (): void => {
    tpm2(tpm, 'tpm2_flushcontext', ['-t'], { cwd: dir });
  };
  const t: ToolTpm = {
    tpm,
    dir,
    run(tool, args) {
      try {
        return tpm2(tpm, tool, args, { cwd: dir });
      } finally {
        flush();
      }
    },
    fails(tool, args) {
      try {
        t.run(tool, args);
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
    },
    file: (name) => readFileSync(join(dir, name)),
    path: (name) => join(dir, name),
    ekSession(name = 'ek-session.ctx') {
      tpm2(tpm, 'tpm2_flushcontext', ['-s'], { cwd: dir });
      tpm2(tpm, 'tpm2_startauthsession', ['--policy-session', '-S', name], { cwd: dir });
      tpm2(tpm, 'tpm2_policysecret', ['-S', name, '-c', 'e'], { cwd: dir });
      flush();
      return `session:${name}`;
    },
    async stop() {
      await tpm.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

/** tpm2_createek -G alg -c ek-ALG.ctx -u ek-ALG.pub; tpm2_createak under it (-G akAlg), files ak-ALG.* */
export function createEkAk(t: ToolTpm, ekAlg: 'rsa' | 'ecc', akAlg: string, akScheme = akAlg.startsWith('rsa') ? 'rsassa' : 'ecdsa', akHash = 'sha256'): { ek: string; ak: string } {
  const ek = `ek-${ekAlg}`;
  // The EK is recreated each time: the same template gives the same key (the TPM derives it from the EPS).
  const ak = `ak-${ekAlg}-${akAlg}-${akScheme}-${akHash}`;
  t.run('tpm2_createek', ['-G', ekAlg, '-c', `${ek}.ctx`, '-u', `${ek}.pub`]);
  t.run('tpm2_createak', ['-C', `${ek}.ctx`, '-c', `${ak}.ctx`, '-G', akAlg, '-g', akHash, '-s', akScheme, '-u', `${ak}.pub`, '-n', `${ak}.name`, '-r', `${ak}.priv`]);
  tpm2(t.tpm, 'tpm2_flushcontext', ['-s'], { cwd: t.dir });
  return { ek, ak };
}
