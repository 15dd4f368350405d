/**
 * Shared by the test/efi suites: the real Debian EFI binaries (scripts/fetch-efi.sh, cached in
 * the gitignored test/data/efi-cache/), the external tools, and the UKIs of our OVMF boots
 * rebuilt the way qemu-tests/make-eventlogs.sh builds them (qemu-tests/lib.sh).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CACHE = ROOT + 'test/data/efi-cache/';

let fetched: { files: Record<string, string> } | { skip: string } | undefined;

/** The cached binaries by name (shim, grub, sdboot, stub, fwupd, kernel, memtest-x64, memtest-ia32), or why not. */
export function efiBinaries(): { files: Record<string, string> } | { skip: string } {
  if (fetched) return fetched;
  if (!existsSync(CACHE + 'MANIFEST')) {
    const r = spawnSync('bash', [ROOT + 'scripts/fetch-efi.sh'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0 || !existsSync(CACHE + 'MANIFEST')) {
      fetched = { skip: `cannot fetch the Debian EFI binaries (scripts/fetch-efi.sh: ${(r.stderr || r.error?.message || `status ${r.status}`).trim().split('\n').pop()})` };
      return fetched;
    }
  }
  const files: Record<string, string> = {};
  for (const line of readFileSync(CACHE + 'MANIFEST', 'utf8').trim().split('\n')) {
    const [name, path] = line.split(' ');
    files[name] = ROOT + path;
  }
  fetched = { files };
  return fetched;
}

export function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

export function sh(cmd: string, args: string[], opts: { input?: Buffer } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, input: opts.input, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Skip helper: prints the reason once, and tells uvu to pass the test vacuously. */
export function skipped(reason: string): true {
  console.log(`  SKIP: ${reason}`);
  return true;
}

export const CMDLINE1 = 'console=ttyS0 panic=-1 loglevel=4';
export const CMDLINE2 = 'console=ttyS0 panic=-1 loglevel=4 bootkey.test=cmdline2';

let ukis: { uki1: string; uki2: string; signed: string; initrd: string } | { skip: string } | undefined;

/**
 * The UKIs test/data/qemu/uki-*.bin booted, rebuilt with qemu-tests/lib.sh (objcopy of the
 * cached systemd-stub, the pinned kernel, a reproducible busybox initramfs) into
 * test/data/efi-cache/uki/: uki1 (cmdline 1), uki2 (cmdline 2), and uki1 sbsigned with OVMF's
 * snakeoil key. Cached; ~5 s the first time.
 */
/** testUkis(), or undefined after printing why it is skipped. */
export function testUkisOrSkip(): { uki1: string; uki2: string; signed: string; initrd: string } | undefined {
  const u = testUkis();
  if ('skip' in u) {
    skipped(u.skip);
    return undefined;
  }
  return u;
}

export function testUkis(): { uki1: string; uki2: string; signed: string; initrd: string } | { skip: string } {
  if (ukis) return ukis;
  const bins = efiBinaries();
  if ('skip' in bins) return (ukis = bins);
  for (const t of ['objcopy', 'objdump', 'sbsign', 'zstd', 'cpio', 'openssl']) if (!have(t)) return (ukis = { skip: `${t} not installed (scripts/setup.sh installs it)` });
  if (!existsSync('/bin/busybox')) return (ukis = { skip: 'busybox-static not installed' });
  if (!existsSync('/usr/share/ovmf/PkKek-1-snakeoil.key')) return (ukis = { skip: 'ovmf (snakeoil key) not installed' });
  const d = CACHE + 'uki/';
  const out = { uki1: d + 'uki1.efi', uki2: d + 'uki2.efi', signed: d + 'uki1.signed.efi', initrd: d + 'initrd.zst' };
  if (!existsSync(out.signed)) {
    mkdirSync(d, { recursive: true });
    const script = `. qemu-tests/lib.sh
BK_STUB=$1
bk_build_initramfs "$2/initrd.zst" qemu-tests/initramfs/dump-init.sh
bk_build_uki "$2/uki1.efi" "$3" "$2/initrd.zst" "$4"
bk_build_uki "$2/uki2.efi" "$3" "$2/initrd.zst" "$5"
bk_sign "$2/uki1.signed.efi.tmp" "$2/uki1.efi"
mv "$2/uki1.signed.efi.tmp" "$2/uki1.signed.efi"`;
    const r = spawnSync('bash', ['-c', script, 'build', bins.files.stub, d, bins.files.kernel, CMDLINE1, CMDLINE2], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`building the test UKIs failed: ${r.stderr}`);
  }
  return (ukis = out);
}
