/** Shared loaders for the IMA tests: the real lists in test/data/ima and their machines' PCRs. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pcrValuesFromText, type BankName, type PcrValues } from '../../src/pcrs.ts';

export const DATA = fileURLToPath(new URL('../data/ima/', import.meta.url));
/** Debian 6.1 (one sha1 list) and 6.12 (per-bank lists) booted under QEMU with swtpm. */
export const K61 = DATA + 'qemu-debian/';
export const K612 = DATA + 'qemu-debian-6.12/';

export function read(path: string): Buffer {
  return readFileSync(path);
}

export function pcrsOf(dir: string): PcrValues {
  return pcrValuesFromText(readFileSync(dir + 'pcrs.json', 'utf8'));
}

/** PCR 10 of the given banks, as a quote would carry it. */
export function pcr10(dir: string, banks: BankName[] = ['sha1', 'sha256']): Map<BankName, Buffer> {
  const p = pcrsOf(dir);
  return new Map(banks.map((b) => [b, p.get(b)!.get(10)!]));
}

/** Every list file of a capture directory with the bank its name implies. */
export const LISTS: [string, BankName][] = [
  [K61 + 'binary_runtime_measurements', 'sha1'],
  [K61 + 'ascii_runtime_measurements', 'sha1'],
  [K612 + 'binary_runtime_measurements', 'sha1'],
  [K612 + 'binary_runtime_measurements_sha1', 'sha1'],
  [K612 + 'binary_runtime_measurements_sha256', 'sha256'],
  [K612 + 'ascii_runtime_measurements', 'sha1'],
  [K612 + 'ascii_runtime_measurements_sha1', 'sha1'],
  [K612 + 'ascii_runtime_measurements_sha256', 'sha256'],
];

export function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/') + 1);
}
