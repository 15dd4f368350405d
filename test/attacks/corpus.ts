/**
 * The logs the attack tests mutate: every real log of test/data/eventlogs (MANIFEST.json kind
 * "real"; negative, CCEL and synthetic ones are skipped) and the OVMF boots of test/data/qemu.
 * @module
 */
import { readFileSync, readdirSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

export const EVENTLOGS = fileURLToPath(new URL('../data/eventlogs/', import.meta.url));
export const QEMU = fileURLToPath(new URL('../data/qemu/', import.meta.url));

export interface CorpusLog {
  name: string;
  bytes: Buffer;
}

export function qemuLog(name: string): Buffer {
  return readFileSync(`${QEMU}${name}.bin`);
}

export function qemuLogs(): CorpusLog[] {
  return readdirSync(QEMU).filter((f) => f.endsWith('.bin')).sort().map((f) => ({ name: `qemu/${f.replace(/\.bin$/, '')}`, bytes: readFileSync(QEMU + f) }));
}

export function realLogs(): CorpusLog[] {
  const manifest = JSON.parse(readFileSync(`${EVENTLOGS}MANIFEST.json`, 'utf8')) as { file: string; kind: string }[];
  return manifest.filter((m) => m.kind === 'real').map((m) => basename(m.file)).sort().map((f) => ({ name: f, bytes: readFileSync(EVENTLOGS + f) }));
}
