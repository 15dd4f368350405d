/**
 * Writes test/data/efi/tiny-uki.efi: a tiny hand-built UKI-shaped PE (.text, .osrel, .cmdline,
 * .linux = another tiny PE, .initrd), for test/efi/fuzz.test.ts and the CLI tests; then
 * test/data/efi/make-tiny.sh signs it. node --import tsx test/data/efi/make-tiny.ts
 */
import { writeFileSync } from 'node:fs';
import { buildPe } from '../../efi/build-pe.ts';

const kernel = buildPe({ sections: [{ name: '.text', data: Buffer.alloc(0x280, 0x90) }, { name: '.data', data: Buffer.from('tiny kernel') }] });
const uki = buildPe({
  sections: [
    { name: '.text', data: Buffer.alloc(0x200, 0xc3) },
    { name: '.sdmagic', data: Buffer.from('#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####\0') },
    { name: '.osrel', data: Buffer.from('NAME="tiny"\nID=tiny\nPRETTY_NAME="tiny test UKI"\n') },
    { name: '.cmdline', data: Buffer.from('console=ttyS0 tiny=1') },
    { name: '.uname', data: Buffer.from('6.1.0-tiny') },
    { name: '.linux', data: kernel },
    { name: '.initrd', data: Buffer.alloc(0x300, 0x42) },
  ],
});
writeFileSync(new URL('./tiny-uki.efi', import.meta.url), uki);
