/**
 * UEFI device path → text, as the UEFI shell prints it (UEFI 2.10 §10.3 "Device Path
 * Nodes" and §10.6 "Text Device Path Representation"). Numbers are "0x" + uppercase hex,
 * GUIDs are lowercase. Never throws: a malformed node ends the text with `Malformed(...)`.
 * @module
 */
import { Reader } from './reader.ts';
import { guidToString, ucs2 } from './efi.ts';

const HW = 0x01;
const ACPI = 0x02;
const MSG = 0x03;
const MEDIA = 0x04;
const BBS = 0x05;
const END = 0x7f;

/** Most nodes a path may have before we stop rendering. */
const MAX_NODES = 256;

const hx = (v: number | bigint): string => '0x' + v.toString(16).toUpperCase();

export interface DevicePathText {
  text: string;
  /** The FilePath node(s) of the last instance, joined, e.g. "\EFI\BOOT\BOOTX64.EFI". */
  filePath?: string;
}

/** Renders an EFI_DEVICE_PATH_PROTOCOL byte string. */
export function devicePathToText(b: Buffer): DevicePathText {
  const parts: string[] = [];
  let cur: string[] = [];
  let filePath: string | undefined;
  let pos = 0;
  let nodes = 0;
  while (pos < b.length) {
    if (++nodes > MAX_NODES || b.length - pos < 4) {
      cur.push(`Malformed(${hx(pos)})`);
      break;
    }
    const type = b[pos];
    const sub = b[pos + 1];
    const len = b.readUInt16LE(pos + 2);
    if (len < 4 || len > b.length - pos) {
      cur.push(`Malformed(${hx(pos)})`);
      break;
    }
    const body = b.subarray(pos + 4, pos + len);
    pos += len;
    if (type === END) {
      parts.push(cur.join('/'));
      cur = [];
      if (sub === 0xff) break;
      filePath = undefined;
      continue;
    }
    let s: string;
    try {
      s = node(type, sub, body);
    } catch {
      s = generic(type, sub, body);
    }
    if (type === MEDIA && sub === 0x04) {
      const p = ucs2(body);
      filePath = filePath === undefined ? p : joinPath(filePath, p);
    }
    cur.push(s);
  }
  if (cur.length) parts.push(cur.join('/'));
  return filePath === undefined ? { text: parts.join(',') } : { text: parts.join(','), filePath };
}

function joinPath(a: string, b: string): string {
  if (a.endsWith('\\') || b.startsWith('\\')) return a + b;
  return `${a}\\${b}`;
}

function generic(type: number, sub: number, body: Buffer): string {
  return `Path(${type},${sub},${body.toString('hex').toUpperCase()})`;
}

function vendor(prefix: string, r: Reader): string {
  const g = guidToString(r.bytes(16, 'Guid'));
  const data = r.rest();
  return data.length ? `${prefix}(${g},${data.toString('hex').toUpperCase()})` : `${prefix}(${g})`;
}

function node(type: number, sub: number, body: Buffer): string {
  const r = new Reader(body);
  switch (type) {
    case HW:
      switch (sub) {
        case 0x01: {
          const fn = r.u8();
          const dev = r.u8();
          return `Pci(${hx(dev)},${hx(fn)})`;
        }
        case 0x02:
          return `PcCard(${hx(r.u8())})`;
        case 0x03: {
          const mt = r.u32();
          return `MemoryMapped(${hx(mt)},${hx(r.u64())},${hx(r.u64())})`;
        }
        case 0x04:
          return vendor('VenHw', r);
        case 0x05:
          return `Ctrl(${hx(r.u32())})`;
        case 0x06: {
          const it = r.u8();
          return `BMC(${hx(it)},${hx(r.u64())})`;
        }
      }
      break;
    case ACPI:
      switch (sub) {
        case 0x01: {
          const hid = r.u32();
          const uid = r.u32();
          return acpi(hid, uid);
        }
        case 0x02: {
          const hid = r.u32();
          const uid = r.u32();
          const cid = r.u32();
          const strs = r.rest().toString('latin1').split('\0');
          return `AcpiEx(${eisa(hid)},${eisa(cid)},${hx(uid)},${strs[0] ?? ''},${strs[2] ?? ''},${strs[1] ?? ''})`;
        }
        case 0x03:
          return `AcpiAdr(${hx(r.u32())})`;
      }
      break;
    case MSG:
      return messaging(sub, r);
    case MEDIA:
      switch (sub) {
        case 0x01: {
          const part = r.u32();
          const start = r.u64();
          const size = r.u64();
          const sig = r.bytes(16, 'PartitionSignature');
          const fmt = r.u8();
          const sigType = r.u8();
          const sigText = sigType === 2 ? guidToString(sig) : sigType === 1 ? hx(sig.readUInt32LE(0)) : '0';
          const fmtText = fmt === 1 ? 'MBR' : fmt === 2 ? 'GPT' : hx(fmt);
          return `HD(${part},${fmtText},${sigText},${hx(start)},${hx(size)})`;
        }
        case 0x02: {
          const entry = r.u32();
          return `CDROM(${hx(entry)},${hx(r.u64())},${hx(r.u64())})`;
        }
        case 0x03:
          return vendor('VenMedia', r);
        case 0x04:
          return ucs2(body);
        case 0x05:
          return `Media(${guidToString(r.bytes(16))})`;
        case 0x06:
          return `FvFile(${guidToString(r.bytes(16))})`;
        case 0x07:
          return `Fv(${guidToString(r.bytes(16))})`;
        case 0x08: {
          r.u32();
          return `Offset(${hx(r.u64())},${hx(r.u64())})`;
        }
        case 0x09: {
          const start = r.u64();
          const end = r.u64();
          const g = guidToString(r.bytes(16));
          return `RamDisk(${hx(start)},${hx(end)},${r.u16()},${g})`;
        }
      }
      break;
    case BBS:
      if (sub === 0x01) {
        const devType = r.u16();
        const status = r.u16();
        const desc = r.rest().toString('latin1').replace(/\0.*$/s, '');
        return `BBS(${hx(devType)},${desc},${hx(status)})`;
      }
      break;
  }
  return generic(type, sub, body);
}

function eisa(id: number): string {
  if ((id & 0xffff) === 0x41d0) return `PNP${(id >>> 16).toString(16).toUpperCase().padStart(4, '0')}`;
  return hx(id);
}

function acpi(hid: number, uid: number): string {
  if ((hid & 0xffff) === 0x41d0) {
    switch (hid >>> 16) {
      case 0x0a03:
        return `PciRoot(${hx(uid)})`;
      case 0x0a08:
        return `PcieRoot(${hx(uid)})`;
      case 0x0604:
        return `Floppy(${hx(uid)})`;
      case 0x0301:
        return `Keyboard(${hx(uid)})`;
      case 0x0501:
        return `Serial(${hx(uid)})`;
      case 0x0401:
        return `ParallelPort(${hx(uid)})`;
    }
  }
  return `Acpi(${eisa(hid)},${hx(uid)})`;
}

function ipv4(b: Buffer): string {
  return [...b].join('.');
}

function messaging(sub: number, r: Reader): string {
  switch (sub) {
    case 0x01: {
      const primary = r.u8();
      const slave = r.u8();
      return `Ata(${primary ? 'Secondary' : 'Primary'},${slave ? 'Slave' : 'Master'},${hx(r.u16())})`;
    }
    case 0x02: {
      const pun = r.u16();
      return `Scsi(${hx(pun)},${hx(r.u16())})`;
    }
    case 0x03: {
      r.u32();
      const wwn = r.u64();
      return `Fibre(${hx(wwn)},${hx(r.u64())})`;
    }
    case 0x04: {
      r.u32();
      return `I1394(${hx(r.u64())})`;
    }
    case 0x05: {
      const port = r.u8();
      return `USB(${hx(port)},${hx(r.u8())})`;
    }
    case 0x06:
      return `I2O(${hx(r.u32())})`;
    case 0x0a:
      return vendor('VenMsg', r);
    case 0x0b: {
      const mac = r.bytes(32);
      const ifType = r.u8();
      const n = ifType === 0 || ifType === 1 ? 6 : 32;
      return `MAC(${mac.subarray(0, n).toString('hex').toUpperCase()},${hx(ifType)})`;
    }
    case 0x0c: {
      const local = r.bytes(4);
      const remote = r.bytes(4);
      r.u16();
      r.u16();
      const proto = r.u16();
      const stat = r.u8();
      const p = proto === 6 ? 'TCP' : proto === 17 ? 'UDP' : hx(proto);
      return `IPv4(${ipv4(remote)},${p},${stat ? 'Static' : 'DHCP'},${ipv4(local)})`;
    }
    case 0x0d: {
      const local = r.bytes(16);
      const remote = r.bytes(16);
      const fmt = (b: Buffer) => (b.toString('hex').match(/..../g) ?? []).join(':');
      return `IPv6(${fmt(remote)},${fmt(local)})`;
    }
    case 0x0e: {
      r.u32();
      const baud = r.u64();
      const bits = r.u8();
      const parity = r.u8();
      return `Uart(${baud},${bits},${parity},${r.u8()})`;
    }
    case 0x0f: {
      const vid = r.u16();
      const pid = r.u16();
      const cls = r.u8();
      const subcls = r.u8();
      return `UsbClass(${hx(vid)},${hx(pid)},${hx(cls)},${hx(subcls)},${hx(r.u8())})`;
    }
    case 0x10: {
      const iface = r.u16();
      const vid = r.u16();
      const pid = r.u16();
      return `UsbWwid(${hx(vid)},${hx(pid)},${hx(iface)},"${ucs2(r.rest())}")`;
    }
    case 0x11:
      return `Unit(${hx(r.u8())})`;
    case 0x12: {
      const hba = r.u16();
      const pm = r.u16();
      return `Sata(${hx(hba)},${hx(pm)},${hx(r.u16())})`;
    }
    case 0x14:
      return `Vlan(${r.u16()})`;
    case 0x17: {
      const nsid = r.u32();
      const eui = [...r.bytes(8)].reverse().map((x) => x.toString(16).toUpperCase().padStart(2, '0'));
      return `NVMe(${hx(nsid)},${eui.join('-')})`;
    }
    case 0x18:
      return `Uri(${r.rest().toString('latin1')})`;
    case 0x1a:
      return `SD(${r.u8()})`;
    case 0x1d:
      return `eMMC(${r.u8()})`;
  }
  return generic(MSG, sub, r.buf);
}
