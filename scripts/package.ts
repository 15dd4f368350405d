/**
 * `npm run package`: the RPM and Debian packages from dist/ (run `npm run build` first; the
 * npm script does). Three binary packages per format (docs/PACKAGING.md "Packages"):
 *   bootkey          the single executable (/usr/libexec/bootkey/bootkey, /usr/bin/bootkey),
 *                    bootkey(8), bootkey.conf(5), bash completion, /etc/bootkey
 *   bootkey-server   bootkey-server.service, the SQLite addon, /etc/bootkey/server.conf, bootkey-server(8), server.conf(5)
 *   bootkey-machine  the dracut module 90bootkey with the initrd units, the initrd scriptlets,
 *                    bootkey-agent@.service (the runtime attestation agent on the booted system)
 * Output: dist/packages/*.rpm, *.deb. rpmbuild comes from Debian's `rpm` package; without it only
 * the .debs are built (and said so). Sizes are printed.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { VERSION } from '../src/cli/version.ts';
import { writeDocs } from './gen-docs.ts';
import { exampleServerConf } from '../src/config/server-conf.ts';
import { exampleMachineConf } from '../src/config/machine-conf.ts';

const ROOT = resolve(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist');
const WORK = join(DIST, 'pkg');
const OUT = join(DIST, 'packages');
const DEB_REVISION = '1';
const MAINTAINER = 'bootkey developers <bootkey@example.org>';
const DATE = 'Tue, 01 Dec 2026 00:00:00 +0000';

export const PACKAGES = ['bootkey', 'bootkey-server', 'bootkey-machine'] as const;
type Pkg = (typeof PACKAGES)[number];

function put(root: string, path: string, data: Buffer | string, mode = 0o644): void {
  const f = join(root, path);
  mkdirSync(dirname(f), { recursive: true });
  writeFileSync(f, data);
  chmodSync(f, mode);
}

function copy(root: string, path: string, from: string, mode = 0o644): void {
  put(root, path, readFileSync(from), mode);
}

/** man pages are compressed with gzip -9n's settings (no name, no time). */
function gz(data: Buffer): Buffer {
  const g = gzipSync(data, { level: 9 });
  g.writeUInt32LE(0, 4); // mtime 0: reproducible
  return g;
}

/** Stages each package's files under WORK/stage/<pkg>; returns the directories. */
export function stage(): Record<Pkg, string> {
  const pkgVersion = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
  if (pkgVersion !== VERSION) throw new Error(`package.json version ${pkgVersion} != src/cli/version.ts ${VERSION}`);
  for (const f of ['bootkey-linux-x64', 'better_sqlite3.node']) {
    if (!existsSync(join(DIST, f))) throw new Error(`dist/${f} missing: run npm run build first`);
  }
  rmSync(WORK, { recursive: true, force: true });
  const docs = writeDocs(join(WORK, 'docs'));
  const doc = (n: string) => readFileSync(docs.find((d) => d.endsWith('/' + n))!);
  const dirs = Object.fromEntries(PACKAGES.map((p) => [p, join(WORK, 'stage', p)])) as Record<Pkg, string>;
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });

  const b = dirs.bootkey;
  copy(b, 'usr/libexec/bootkey/bootkey', join(DIST, 'bootkey-linux-x64'), 0o755);
  mkdirSync(join(b, 'usr/bin'), { recursive: true });
  symlinkSync('../libexec/bootkey/bootkey', join(b, 'usr/bin/bootkey'));
  mkdirSync(join(b, 'etc/bootkey'), { recursive: true });
  chmodSync(join(b, 'etc/bootkey'), 0o755);
  put(b, 'usr/share/man/man8/bootkey.8.gz', gz(doc('bootkey.8')));
  put(b, 'usr/share/man/man5/bootkey.conf.5.gz', gz(doc('bootkey.conf.5')));
  put(b, 'usr/share/bash-completion/completions/bootkey', doc('bootkey.bash'));
  copy(b, 'usr/share/doc/bootkey/README.md', join(ROOT, 'README.md'));
  copy(b, 'usr/share/doc/bootkey/PACKAGING.md', join(ROOT, 'docs/PACKAGING.md'));

  const s = dirs['bootkey-server'];
  copy(s, 'usr/lib/systemd/system/bootkey-server.service', join(ROOT, 'systemd/bootkey-server.service'));
  copy(s, 'usr/libexec/bootkey/better_sqlite3.node', join(DIST, 'better_sqlite3.node'));
  put(s, 'etc/bootkey/server.conf', exampleServerConf()); // `bootkey config example --server`
  put(s, 'usr/share/man/man8/bootkey-server.8.gz', gz(doc('bootkey-server.8')));
  put(s, 'usr/share/man/man5/server.conf.5.gz', gz(doc('server.conf.5')));
  copy(s, 'usr/share/doc/bootkey/SERVER.md', join(ROOT, 'docs/SERVER.md'));

  const m = dirs['bootkey-machine'];
  const mod = 'usr/lib/dracut/modules.d/90bootkey';
  copy(m, `${mod}/module-setup.sh`, join(ROOT, 'dracut/90bootkey/module-setup.sh'), 0o755);
  for (const u of ['bootkey-askpass.path', 'bootkey-askpass.service', 'bootkey-askpass-network.conf']) copy(m, `${mod}/${u}`, join(ROOT, 'systemd', u));
  copy(m, 'usr/libexec/bootkey/regenerate-initrd', join(ROOT, 'packaging/initrd.sh'), 0o755);
  // the booted system's unit (not in the initrd: ConditionPathExists=!/etc/initrd-release)
  copy(m, 'usr/lib/systemd/system/bootkey-agent@.service', join(ROOT, 'systemd/bootkey-agent@.service'));
  put(m, 'etc/bootkey/bootkey.conf', exampleMachineConf()); // `bootkey config example --machine`
  copy(m, 'usr/share/doc/bootkey/INITRD.md', join(ROOT, 'docs/INITRD.md'));
  return dirs;
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 }).toString();
}

export function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function duKiB(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) n += Math.ceil(statSync(p).size / 1024);
    }
  };
  walk(dir);
  return n;
}

const DEB: Record<Pkg, { depends: string; description: string; conffiles: string[] }> = {
  bootkey: {
    depends: 'libc6 (>= 2.28), libstdc++6 (>= 10)',
    description: 'Boot-time remote attestation and LUKS2 unlock with TPM 2.0\n bootkey lets a machine unlock its LUKS2 root volume at boot only when its\n measured boot matches its policy, proven by a TPM 2.0 quote to a key-release\n server. This package holds the bootkey command (a single executable with its\n own Node.js runtime), its manual pages and bash completion.',
    conffiles: [],
  },
  'bootkey-server': {
    depends: `bootkey (= ${VERSION}-${DEB_REVISION}), libc6 (>= 2.28), openssl, systemd`,
    description: 'bootkey key-release server (systemd service)\n The bootkey key-release server as a hardened systemd service\n (bootkey-server.service, DynamicUser, state in /var/lib/bootkey).\n Set it up with: bootkey setup server.',
    conffiles: ['/etc/bootkey/server.conf'],
  },
  'bootkey-machine': {
    depends: `bootkey (= ${VERSION}-${DEB_REVISION}), dracut-core, cryptsetup-bin`,
    description: 'bootkey machine role: dracut module, initrd units, runtime agent\n The dracut module (90bootkey) and the initrd ask-password units that unlock\n LUKS2 volumes with a bootkey token at boot, and bootkey-agent@.service, which\n attests the running system (IMA measurement list, TPM quotes) to the server.\n Set it up with: bootkey setup machine --server URL ...',
    conffiles: ['/etc/bootkey/bootkey.conf'],
  },
};

/** Builds the three .debs with dpkg-deb (owner root:root); returns their paths. */
export function buildDebs(dirs: Record<Pkg, string>): string[] {
  const out: string[] = [];
  for (const p of PACKAGES) {
    const root = join(WORK, 'deb', p);
    rmSync(root, { recursive: true, force: true });
    mkdirSync(dirname(root), { recursive: true });
    run('cp', ['-a', dirs[p], root]);
    const docdir = join(root, 'usr/share/doc', p);
    if (p !== 'bootkey') {
      // Debian: one doc directory per package; the shared doc files move to it
      const shared = join(root, 'usr/share/doc/bootkey');
      if (existsSync(shared)) run('mv', [shared, docdir]);
    }
    put(root, `usr/share/doc/${p}/copyright`, readFileSync(join(ROOT, 'packaging/deb/copyright')));
    put(root, `usr/share/doc/${p}/changelog.Debian.gz`, gz(Buffer.from(`${p} (${VERSION}-${DEB_REVISION}) unstable; urgency=medium\n\n  * First package.\n\n -- ${MAINTAINER}  ${DATE}\n`)));
    put(root, `usr/share/lintian/overrides/${p}`, readFileSync(join(ROOT, `packaging/deb/${p}.lintian-overrides`)));
    const d = DEB[p];
    const control = [
      `Package: ${p}`, `Version: ${VERSION}-${DEB_REVISION}`, 'Architecture: amd64', `Maintainer: ${MAINTAINER}`,
      `Installed-Size: ${duKiB(root)}`, `Depends: ${d.depends}`, 'Section: admin', 'Priority: optional',
      'Homepage: https://github.com/bootkey/bootkey', `Description: ${d.description}`,
    ].join('\n') + '\n';
    put(root, 'DEBIAN/control', control);
    if (d.conffiles.length) put(root, 'DEBIAN/conffiles', d.conffiles.join('\n') + '\n');
    for (const s of ['postinst', 'prerm', 'postrm']) {
      const f = join(ROOT, `packaging/deb/${p}.${s}`);
      if (existsSync(f)) copy(root, `DEBIAN/${s}`, f, 0o755);
    }
    const file = join(OUT, `${p}_${VERSION}-${DEB_REVISION}_amd64.deb`);
    mkdirSync(OUT, { recursive: true });
    run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, file]);
    out.push(file);
  }
  return out;
}

/** Builds the RPMs with rpmbuild from one staged tree; returns their paths. */
export function buildRpms(dirs: Record<Pkg, string>): string[] {
  const root = join(WORK, 'rpmroot');
  const top = join(WORK, 'rpmbuild');
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  for (const p of PACKAGES) run('cp', ['-a', `${dirs[p]}/.`, root]);
  run('rpmbuild', [
    '-bb', '--quiet', '--define', `_topdir ${top}`, '--define', `stage ${root}`, '--define', `pkgversion ${VERSION}`,
    '--define', '_build_id_links none', join(ROOT, 'packaging/rpm/bootkey.spec'),
  ]);
  mkdirSync(OUT, { recursive: true });
  const out: string[] = [];
  for (const arch of readdirSync(join(top, 'RPMS'))) {
    for (const f of readdirSync(join(top, 'RPMS', arch))) {
      copyFileSync(join(top, 'RPMS', arch, f), join(OUT, f));
      out.push(join(OUT, f));
    }
  }
  return out;
}

export function buildAll(): string[] {
  rmSync(OUT, { recursive: true, force: true });
  const dirs = stage();
  const files = buildDebs(dirs);
  if (have('rpmbuild')) files.push(...buildRpms(dirs));
  else process.stdout.write('package: rpmbuild not found (apt-get install rpm): no RPMs built\n');
  return files;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  for (const f of buildAll()) process.stdout.write(`package: ${f.slice(ROOT.length + 1)} ${(statSync(f).size / 1048576).toFixed(1)} MiB\n`);
}
