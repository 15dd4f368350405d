/** Hand-built PE/COFF images for the test/efi suites (no toolchain needed). */

export interface Sec {
  name: string;
  data: Buffer;
  virtualSize?: number;
}

/**
 * A minimal image: DOS header (e_lfanew 0x80), PE header, optional header with `nrva` data
 * directories, section table in `order`, SizeOfHeaders 0x200, sections at 0x200-aligned offsets
 * laid out in the given order, then `trailing`, then `cert` (8-aligned) when given.
 */
export function buildPe(opts: { pe32plus?: boolean; nrva?: number; sections?: Sec[]; tableOrder?: number[]; trailing?: Buffer; cert?: Buffer } = {}): Buffer {
  const pe32plus = opts.pe32plus ?? true;
  const nrva = opts.nrva ?? 16;
  const sections = opts.sections ?? [
    { name: '.text', data: Buffer.alloc(0x300, 0x11) },
    { name: '.data', data: Buffer.alloc(0x100, 0x22) },
  ];
  const peOff = 0x80;
  const optSize = (pe32plus ? 112 : 96) + nrva * 8;
  const secTable = peOff + 24 + optSize;
  const headerSize = Math.ceil((secTable + sections.length * 40) / 0x200) * 0x200;
  const offsets: number[] = [];
  let at = headerSize;
  for (const s of sections) {
    offsets.push(at);
    at += Math.ceil(s.data.length / 0x200) * 0x200;
  }
  const trailing = opts.trailing ?? Buffer.alloc(0);
  const bodyEnd = at + trailing.length;
  const certAt = (bodyEnd + 7) & ~7;
  const total = opts.cert ? certAt + opts.cert.length : bodyEnd;
  const b = Buffer.alloc(total);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(peOff, 0x3c);
  b.write('PE\0\0', peOff, 'latin1');
  b.writeUInt16LE(pe32plus ? 0x8664 : 0x14c, peOff + 4);
  b.writeUInt16LE(sections.length, peOff + 6);
  b.writeUInt32LE(0x5f5e100, peOff + 8);
  b.writeUInt16LE(optSize, peOff + 20);
  const opt = peOff + 24;
  b.writeUInt16LE(pe32plus ? 0x20b : 0x10b, opt);
  b.writeUInt32LE(0x1000, opt + 16);
  b.writeUInt32LE(0x10000, opt + 56);
  b.writeUInt32LE(headerSize, opt + 60);
  b.writeUInt32LE(0xdeadbeef, opt + 64); // CheckSum
  b.writeUInt16LE(10, opt + 68);
  b.writeUInt32LE(nrva, opt + (pe32plus ? 108 : 92));
  if (opts.cert && nrva > 4) {
    const dd = opt + (pe32plus ? 112 : 96) + 32;
    b.writeUInt32LE(certAt, dd);
    b.writeUInt32LE(opts.cert.length, dd + 4);
  }
  const order = opts.tableOrder ?? sections.map((_, i) => i);
  order.forEach((i, slot) => {
    const h = secTable + slot * 40;
    const s = sections[i];
    b.write(s.name, h, 'latin1');
    b.writeUInt32LE(s.virtualSize ?? s.data.length, h + 8);
    b.writeUInt32LE(0x1000 * (i + 1), h + 12);
    b.writeUInt32LE(s.data.length === 0 ? 0 : Math.ceil(s.data.length / 0x200) * 0x200, h + 16);
    b.writeUInt32LE(s.data.length === 0 ? 0 : offsets[i], h + 20);
  });
  sections.forEach((s, i) => s.data.copy(b, offsets[i]));
  trailing.copy(b, at);
  if (opts.cert) opts.cert.copy(b, certAt);
  return b;
}

