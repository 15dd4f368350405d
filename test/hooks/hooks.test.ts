/**
 * The update hooks (hooks/) call `bootkey stage` with the right arguments: run each with a stub
 * `bootkey` (BOOTKEY=stub) that records its arguments and exits with a chosen status. Checks: the
 * kernel-install plugin (UKI layout, ukify's staging area, type #1 with its initrd, `remove`
 * ignored), the Debian postinst.d hook (GRUB kernel path, initrd), the sdbootutil wrapper (a UKI
 * in EFI/Linux, else the entry's kernel and initrd), no BOOTKEY_DEVICE → nothing run, a refusal →
 * exit 0 with the reason (BOOTKEY_STRICT=1 → the status).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, mkdirSync, existsSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const d = mkdtempSync(join(tmpdir(), 'bootkey-hooks-'));
const stub = join(d, 'bootkey');
writeFileSync(stub, `#!/bin/sh\nprintf '%s\\n' "$@" > "${d}/args"\nexit \${STUB_RC:-0}\n`);
chmodSync(stub, 0o755);

function run(hook: string, args: string[], env: Record<string, string> = {}): { status: number | null; args?: string[]; stderr: string } {
  rmSync(join(d, 'args'), { force: true });
  const r = spawnSync('sh', [join(ROOT, 'hooks', hook), ...args], {
    encoding: 'utf8', env: { PATH: process.env.PATH!, BOOTKEY: stub, BOOTKEY_HOOKS: join(ROOT, 'hooks'), BOOTKEY_CONF: '/nonexistent', BOOTKEY_DEVICE: '/dev/vda2', ...env },
  });
  const a = existsSync(join(d, 'args')) ? readFileSync(join(d, 'args'), 'utf8').trimEnd().split('\n') : undefined;
  return { status: r.status, args: a, stderr: r.stderr };
}

test('kernel-install plugin: UKI layout, staging area, type #1 with initrd, remove ignored', () => {
  let r = run('kernel-install/90-bootkey.install', ['add', '6.1.0-57', '/efi/x', '/tmp/uki.efi'], { KERNEL_INSTALL_LAYOUT: 'uki' });
  assert.is(r.status, 0);
  assert.equal(r.args, ['stage', '--device', '/dev/vda2', '--label', 'kernel 6.1.0-57 (UKI)', '--uki', '/tmp/uki.efi']);
  mkdirSync(join(d, 'area'), { recursive: true });
  writeFileSync(join(d, 'area/uki.efi'), 'x');
  r = run('kernel-install/90-bootkey.install', ['add', '6.1.0-57', '/efi/x', '/boot/vmlinuz'], { KERNEL_INSTALL_STAGING_AREA: join(d, 'area') });
  assert.equal(r.args?.slice(-2), ['--uki', join(d, 'area/uki.efi')]);
  r = run('kernel-install/90-bootkey.install', ['add', '6.1.0-57', '/efi/x', '/boot/vmlinuz', '/boot/initrd.img'], { KERNEL_INSTALL_LAYOUT: 'bls', BOOTKEY_ARGS: '--tpm device:/dev/tpmrm0' });
  assert.equal(r.args, ['stage', '--device', '/dev/vda2', '--label', 'kernel 6.1.0-57', '--kernel', '/boot/vmlinuz', '--initrd', '/boot/initrd.img', '--tpm', 'device:/dev/tpmrm0']);
  r = run('kernel-install/90-bootkey.install', ['remove', '6.1.0-57', '/efi/x']);
  assert.is(r.status, 0);
  assert.is(r.args, undefined);
});

test('Debian postinst.d: GRUB kernel path and initrd', () => {
  writeFileSync(join(d, 'initrd'), 'x');
  const r = run('debian/zz-bootkey', ['6.1.0-57-amd64', '/boot/vmlinuz-6.1.0-57-amd64']);
  assert.is(r.status, 0);
  assert.equal(r.args?.slice(0, 9), ['stage', '--device', '/dev/vda2', '--label', 'kernel 6.1.0-57-amd64 (GRUB)', '--kernel', '/boot/vmlinuz-6.1.0-57-amd64', '--kernel-path', r.args?.[8]]);
  assert.match(r.args![8], /^(\/boot)?\/vmlinuz-6\.1\.0-57-amd64$/);
});

test('sdbootutil wrapper: a UKI in EFI/Linux, else the entry kernel and initrd; nothing → exit 0 with a note', () => {
  const esp = join(d, 'esp');
  mkdirSync(join(esp, 'abc/6.1.0-57'), { recursive: true });
  writeFileSync(join(esp, 'abc/6.1.0-57/linux-0123'), 'k');
  writeFileSync(join(esp, 'abc/6.1.0-57/initrd-4567'), 'i');
  let r = run('sdbootutil/bootkey-sdbootutil', ['6.1.0-57', esp]);
  assert.equal(r.args?.slice(4), ['kernel 6.1.0-57', '--kernel', join(esp, 'abc/6.1.0-57/linux-0123'), '--initrd', join(esp, 'abc/6.1.0-57/initrd-4567')]);
  mkdirSync(join(esp, 'EFI/Linux'), { recursive: true });
  writeFileSync(join(esp, 'EFI/Linux/opensuse-6.1.0-57.efi'), 'u');
  r = run('sdbootutil/bootkey-sdbootutil', ['6.1.0-57', esp]);
  assert.equal(r.args?.slice(4), ['kernel 6.1.0-57 (UKI)', '--uki', join(esp, 'EFI/Linux/opensuse-6.1.0-57.efi')]);
  r = run('sdbootutil/bootkey-sdbootutil', ['9.9', esp]);
  assert.is(r.status, 0);
  assert.match(r.stderr, /no UKI or kernel for 9\.9/);
});

test('no BOOTKEY_DEVICE: nothing run; a refusal: exit 0 with a note, or its status with BOOTKEY_STRICT=1', () => {
  let r = run('kernel-install/90-bootkey.install', ['add', '6.1', '/e', '/u.efi'], { KERNEL_INSTALL_LAYOUT: 'uki', BOOTKEY_DEVICE: '' });
  assert.is(r.status, 0);
  assert.is(r.args, undefined);
  assert.match(r.stderr, /BOOTKEY_DEVICE is not set/);
  r = run('kernel-install/90-bootkey.install', ['add', '6.1', '/e', '/u.efi'], { KERNEL_INSTALL_LAYOUT: 'uki', STUB_RC: '1' });
  assert.is(r.status, 0);
  assert.match(r.stderr, /staging kernel 6\.1 \(UKI\) failed \(exit 1\): the next boot will ask for the passphrase/);
  r = run('kernel-install/90-bootkey.install', ['add', '6.1', '/e', '/u.efi'], { KERNEL_INSTALL_LAYOUT: 'uki', STUB_RC: '1', BOOTKEY_STRICT: '1' });
  assert.is(r.status, 1);
  r = run('debian/zz-bootkey', ['6.1', '/boot/vmlinuz-6.1'], { STUB_RC: '3', BOOTKEY_STRICT: '1' });
  assert.is(r.status, 3);
});

test.after(() => rmSync(d, { recursive: true, force: true }));
test.run();
