/** Shared by the runtime-policy tests (test/ima/policy-*.test.ts): synthetic entries, keys, tools. */
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ImaEntry } from '../../src/ima/types.ts';
import { parseImaList } from '../../src/ima/list.ts';
import { unverifiedImaEntries, type TrustedImaEntries } from '../../src/ima/trusted.ts';
import { type RuntimePolicy, RUNTIME_POLICY_FORMAT } from '../../src/ima/policy.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const KP = ROOT + 'test/data/ima/keylime-policy/';

/** An ImaEntry as the parser would give it (template data not rebuilt: only for unverified checks). */
export function entry(over: Partial<ImaEntry> & { path?: string }): ImaEntry {
  return {
    index: 1,
    offset: 1,
    pcr: 10,
    templateHash: Buffer.alloc(20, 1),
    templateName: 'ima-sig',
    templateData: Buffer.alloc(0),
    violation: false,
    digestAlgo: 'sha256',
    digest: createHash('sha256').update(over.path ?? 'x').digest(),
    ...over,
  };
}

export function sha256(b: Buffer | string): Buffer {
  return createHash('sha256').update(b).digest();
}

export function trusted(entries: ImaEntry[]): TrustedImaEntries {
  return unverifiedImaEntries(entries);
}

/** Parses ASCII list text (Keylime's vectors) into unverified entries. */
export function asciiEntries(...texts: string[]): ImaEntry[] {
  return [...parseImaList(Buffer.from(texts.join(''))).entries];
}

export function readKp(name: string): string {
  return readFileSync(KP + name, 'utf8');
}

export function policy(over: Partial<RuntimePolicy> = {}): RuntimePolicy {
  return { format: RUNTIME_POLICY_FORMAT, version: 1, digests: {}, excludes: [], keyrings: {}, ignoredKeyrings: [], imaBuf: {}, verificationKeys: [], ...over };
}

export function pem(k: KeyObject): string {
  return k.export({ type: 'spki', format: 'pem' }).toString();
}

export function rsaKey(bits = 2048) {
  return generateKeyPairSync('rsa', { modulusLength: bits });
}

export function ecKey(curve = 'prime256v1') {
  return generateKeyPairSync('ec', { namedCurve: curve });
}

/** Runs a tool; throws with its stderr when it fails (a missing tool fails the test: setup.sh installs it). */
export function tool(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd}: ${r.error.message} (scripts/setup.sh installs it)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout + r.stderr;
}
