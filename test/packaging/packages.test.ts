/**
 * The packages `npm run package` builds (scripts/package.ts): their file lists (rpm -qlp,
 * dpkg-deb -c), rpmlint and lintian with the justified overrides only, and the .debs installed
 * into a clean Debian 12 root (a cached debootstrap, scripts/debootstrap-cache.sh) where
 * `bootkey --version`, `bootkey setup server` and the server (SQLite addon) run, and removing
 * bootkey-machine drops its dracut configuration; then that root booted with systemd-nspawn runs
 * bootkey-server.service under systemd with its hardening.
 *
 * Builds dist/packages when missing or older than dist/bootkey-linux-x64 (about 2 min; `npm run
 * build` first if the executable is missing). Each check skips, saying so, only when its tool is
 * not installed (rpm, rpmlint, lintian, debootstrap) or debootstrap cannot reach a mirror.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createServer, type AddressInfo } from 'node:net';
import { buildAll, have } from '../../scripts/package.ts';
import { VERSION } from '../../src/cli/version.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const OUT = join(ROOT, 'dist/packages');
const CACHE = process.env.BOOTKEY_DEBIAN_ROOT ?? join(ROOT, '.cache/debootstrap-bookworm');
const SEA = join(ROOT, 'dist/bootkey-linux-x64');

const EXPECTED: Record<string, string[]> = {
  bootkey: [
    '/usr/libexec/bootkey/bootkey', '/usr/bin/bootkey', '/etc/bootkey', '/usr/share/man/man8/bootkey.8.gz', '/usr/share/man/man5/bootkey.conf.5.gz',
    '/usr/share/bash-completion/completions/bootkey',
  ],
  'bootkey-server': [
    '/usr/lib/systemd/system/bootkey-server.service', '/usr/libexec/bootkey/better_sqlite3.node', '/etc/bootkey/server.conf', '/usr/share/man/man8/bootkey-server.8.gz', '/usr/share/man/man5/server.conf.5.gz',
  ],
  'bootkey-machine': [
    '/usr/lib/dracut/modules.d/90bootkey/module-setup.sh', '/usr/lib/dracut/modules.d/90bootkey/bootkey-askpass.path',
    '/usr/lib/dracut/modules.d/90bootkey/bootkey-askpass.service', '/usr/lib/dracut/modules.d/90bootkey/bootkey-askpass-network.conf',
    '/usr/libexec/bootkey/regenerate-initrd', '/etc/bootkey/bootkey.conf', '/usr/lib/systemd/system/bootkey-agent@.service',
  ],
};

const deb = (p: string) => join(OUT, `${p}_${VERSION}-1_amd64.deb`);
const rpmFile = (p: string) => readdirSync(OUT).map((f) => join(OUT, f)).find((f) => f.endsWith('.rpm') && f.slice(OUT.length + 1).startsWith(`${p}-${VERSION}-`));

function fresh(): boolean {
  if (!existsSync(OUT)) return false;
  const want = Object.keys(EXPECTED).map(deb);
  if (have('rpmbuild')) want.push(...Object.keys(EXPECTED).map((p) => rpmFile(p) ?? '/nonexistent'));
  return want.every((f) => existsSync(f) && statSync(f).mtimeMs >= statSync(SEA).mtimeMs);
}

test.before(async () => {
  if (!existsSync(SEA)) execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (!fresh()) {
    console.log('  building the packages (scripts/package.ts)...');
    buildAll();
  }
});

test('the .debs hold the layout: executable in /usr/libexec/bootkey, /usr/bin/bootkey, units, dracut module, /etc/bootkey', async () => {
  for (const [p, paths] of Object.entries(EXPECTED)) {
    const { stdout } = await run('dpkg-deb', ['-c', deb(p)]);
    const listed = stdout.split('\n').map((l) => l.replace(/^.*? \.\//, '/').replace(/ -> .*$/, '').replace(/\/$/, ''));
    for (const f of paths) assert.ok(listed.includes(f), `${p}.deb lacks ${f}`);
    // everything root-owned
    for (const l of stdout.split('\n').filter(Boolean)) assert.match(l, / root\/root /, l);
  }
  const { stdout } = await run('dpkg-deb', ['-c', deb('bootkey')]);
  assert.match(stdout, /\.\/usr\/bin\/bootkey -> \.\.\/libexec\/bootkey\/bootkey/);
  assert.match(stdout, /-rwxr-xr-x root\/root +\d+ .* \.\/usr\/libexec\/bootkey\/bootkey\n/);
  const { stdout: conf } = await run('dpkg-deb', ['-I', deb('bootkey-server'), 'conffiles']);
  assert.is(conf.trim(), '/etc/bootkey/server.conf');
});

test('the RPMs hold the same layout (rpm -qlp), the scriptlets regenerate the initrd', async () => {
  if (!have('rpm')) {
    console.log('  skip: rpm not installed (apt-get install rpm)');
    return;
  }
  for (const [p, paths] of Object.entries(EXPECTED)) {
    const f = rpmFile(p);
    assert.ok(f, `no ${p} rpm in dist/packages`);
    const { stdout } = await run('rpm', ['-qlp', f!]);
    const listed = stdout.split('\n');
    for (const x of paths) assert.ok(listed.includes(x), `${p}.rpm lacks ${x}`);
  }
  const { stdout: scripts } = await run('rpm', ['-qp', '--scripts', rpmFile('bootkey-machine')!]);
  assert.match(scripts, /posttrans scriptlet[^]*\/usr\/libexec\/bootkey\/regenerate-initrd/);
  assert.match(scripts, /postuninstall scriptlet[^]*# written by bootkey setup machine/);
  const { stdout: cfg } = await run('rpm', ['-qp', '--configfiles', rpmFile('bootkey-server')!]);
  assert.is(cfg.trim(), '/etc/bootkey/server.conf');
});

test('the RPM payload is intact: its executable runs (rpmbuild\'s strip would break the single executable)', async () => {
  if (!have('rpm2cpio') || !have('cpio')) {
    console.log('  skip: rpm2cpio or cpio not installed (apt-get install rpm cpio)');
    return;
  }
  mkdirSync(join(ROOT, '.cache'), { recursive: true });
  const dir = mkdtempSync(join(ROOT, '.cache/rpm-'));
  try {
    await run('sh', ['-c', `rpm2cpio "$1" | cpio -idm --quiet`, 'sh', rpmFile('bootkey')!], { cwd: dir, maxBuffer: 1 << 20 });
    const v = await run(join(dir, 'usr/libexec/bootkey/bootkey'), ['--version']);
    assert.is(v.stdout, `bootkey ${VERSION}\n`);
    assert.is(statSync(join(dir, 'usr/libexec/bootkey/bootkey')).size, statSync(SEA).size, 'byte for byte the built executable');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rpmlint: no error or warning beyond packaging/rpm/rpmlintrc.toml\'s justified filters', async () => {
  if (!have('rpmlint')) {
    console.log('  skip: rpmlint not installed (apt-get install rpmlint)');
    return;
  }
  const files = readdirSync(OUT).filter((f) => f.endsWith('.rpm')).map((f) => join(OUT, f));
  const r = await run('rpmlint', ['-c', join(ROOT, 'packaging/rpm/rpmlintrc.toml'), ...files]).catch((e) => e as { stdout: string });
  assert.match(r.stdout, /3 packages and 0 specfiles checked; 0 errors, 0 warnings/, r.stdout);
});

test('lintian: no error or warning beyond packaging/deb/*.lintian-overrides', async () => {
  if (!have('lintian')) {
    console.log('  skip: lintian not installed (apt-get install lintian)');
    return;
  }
  const r = await run('lintian', ['--tag-display-limit', '0', ...Object.keys(EXPECTED).map(deb)], { maxBuffer: 16 << 20 }).catch((e) => e as { stdout: string; stderr: string });
  const tags = r.stdout.split('\n').filter((l) => /^[EWI]: /.test(l));
  assert.equal(tags, [], r.stdout);
});

function chroot(root: string, args: string[], timeout = 120_000) {
  return run('chroot', [root, ...args], { timeout, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' }, maxBuffer: 16 << 20 });
}

test('install the .debs into a clean Debian 12 root: bootkey --version, setup server, the server starts, removal drops 90-bootkey.conf', async () => {
  if (!existsSync(join(CACHE, 'usr/bin/dpkg'))) {
    if (!have('debootstrap')) {
      console.log(`  skip: no Debian root at ${CACHE} and no debootstrap (apt-get install debootstrap)`);
      return;
    }
    try {
      execFileSync(join(ROOT, 'scripts/debootstrap-cache.sh'), [CACHE], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 900_000 });
    } catch (e) {
      console.log(`  skip: debootstrap could not make ${CACHE} (no mirror reachable?): ${String((e as { stderr?: Buffer }).stderr ?? e).split('\n').slice(-3).join(' ')}`);
      return;
    }
  }
  mkdirSync(join(ROOT, '.cache'), { recursive: true });
  const work = mkdtempSync(join(ROOT, '.cache/root-'));
  const root = join(work, 'root');
  try {
    await run('cp', ['-a', '--reflink=auto', CACHE, root]);
    for (const p of Object.keys(EXPECTED)) await run('cp', [deb(p), join(root, 'tmp')]);
    assert.not.ok(existsSync(join(root, 'usr/bin/bootkey')), 'the root is clean');
    const t0 = Date.now();
    const inst = await chroot(root, ['dpkg', '-i', ...Object.keys(EXPECTED).map((p) => `/tmp/${p}_${VERSION}-1_amd64.deb`)]);
    const ms = Date.now() - t0;
    console.log(`  dpkg -i of the 3 packages into the clean root: ${(ms / 1000).toFixed(1)} s`);
    assert.match(inst.stdout, /Setting up bootkey-server/);

    // the configuration files are `bootkey config example`'s, and valid
    assert.is(readFileSync(join(root, 'etc/bootkey/server.conf'), 'utf8'), (await chroot(root, ['bootkey', 'config', 'example', '--server'])).stdout);
    assert.match((await chroot(root, ['bootkey', 'config', 'check', '--machine'])).stdout, /bootkey\.conf: ok/);
    const v = await chroot(root, ['bootkey', '--version']);
    assert.is(v.stdout, `bootkey ${VERSION}\n`);
    const man = readFileSync(join(root, 'usr/share/man/man8/bootkey.8.gz'));
    assert.ok(man.length > 1000);

    // the server role: setup server (systemctl in a chroot enables, does not start), the SQLite addon loads from /usr/libexec/bootkey
    const s = await chroot(root, ['bootkey', 'setup', 'server']);
    assert.match(s.stdout, /setup: 1\/2 bootkey server init --state \/var\/lib\/bootkey --ca-dir \/var\/lib\/bootkey-ca/);
    assert.ok(existsSync(join(root, 'var/lib/bootkey/admin.token')));
    assert.ok(existsSync(join(root, 'var/lib/bootkey-ca/ca.key')), 'the CA key outside the state');
    assert.not.ok(existsSync(join(root, 'var/lib/bootkey/ca.key')));
    assert.match(s.stdout, /setup: 2\/2 systemctl enable bootkey-server\.service \(systemd is not running here/);
    assert.ok(lstatSync(join(root, 'etc/systemd/system/multi-user.target.wants/bootkey-server.service')).isSymbolicLink(), 'enabled');
    const srv = spawn('chroot', [root, '/usr/libexec/bootkey/bootkey', 'server', '--state', '/var/lib/bootkey', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const line = await new Promise<string>((res, rej) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => rej(new Error(`server did not listen: ${out} ${err}`)), 30_000);
      srv.stdout.on('data', (b: Buffer) => {
        out += b;
        if (out.includes('event=listening')) {
          clearTimeout(timer);
          res(out);
        }
      });
      srv.stderr.on('data', (b: Buffer) => (err += b));
      srv.on('exit', (c) => rej(new Error(`server exited ${c}: ${out} ${err}`)));
    });
    assert.match(line, /event=listening host=127\.0\.0\.1 port=\d+/);
    srv.removeAllListeners('exit');
    srv.kill('SIGTERM');
    await new Promise((r) => srv.once('exit', r));
    assert.ok(existsSync(join(root, 'var/lib/bootkey/bootkey.db')));

    // removing the machine role drops the dracut configuration setup machine wrote (marker), not a foreign one
    writeFileSync(join(root, 'etc/dracut.conf.d/90-bootkey.conf'), '# written by bootkey setup machine (docs/PACKAGING.md)\nadd_dracutmodules+=" bootkey "\n');
    writeFileSync(join(root, 'etc/dracut.conf.d/91-mine.conf'), 'add_dracutmodules+=" bootkey "\n');
    await chroot(root, ['dpkg', '-r', 'bootkey-machine']);
    assert.not.ok(existsSync(join(root, 'etc/dracut.conf.d/90-bootkey.conf')));
    assert.ok(existsSync(join(root, 'etc/dracut.conf.d/91-mine.conf')));
    assert.not.ok(existsSync(join(root, 'usr/lib/dracut/modules.d/90bootkey')));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

/** The .debs installed into a copy of the cached root; returns the root (under work). */
async function installedRoot(work: string, pkgs: string[]): Promise<string> {
  const root = join(work, 'root');
  await run('cp', ['-a', '--reflink=auto', CACHE, root]);
  for (const p of pkgs) await run('cp', [deb(p), join(root, 'tmp')]);
  await chroot(root, ['dpkg', '-i', ...pkgs.map((p) => `/tmp/${p}_${VERSION}-1_amd64.deb`)]);
  return root;
}

function findPid(cmdline: string): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').startsWith(cmdline)) return Number(d);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

test('bootkey-server.service under systemd (the root booted with systemd-nspawn): dynamic user, state migrated and chowned, no capabilities, seccomp, admin requests served', async () => {
  if (!have('systemd-nspawn') || !existsSync(join(CACHE, 'usr/bin/dpkg'))) {
    console.log(`  skip: ${have('systemd-nspawn') ? `no Debian root at ${CACHE}` : 'systemd-nspawn not installed (apt-get install systemd-container)'}`);
    return;
  }
  mkdirSync(join(ROOT, '.cache'), { recursive: true });
  const work = mkdtempSync(join(ROOT, '.cache/root-'));
  let nspawn: ReturnType<typeof spawn> | undefined;
  try {
    const root = await installedRoot(work, ['bootkey', 'bootkey-server']);
    await chroot(root, ['bootkey', 'setup', 'server']);
    // A free port, set through the packaged config file (the unit's default would be 7443); the
    // container has its own network namespace besides.
    const port = await freePort();
    writeFileSync(join(root, 'etc/bootkey/server.conf'), `${readFileSync(join(root, 'etc/bootkey/server.conf'), 'utf8')}\nlisten = 0.0.0.0:${port}\n`);
    nspawn = spawn('systemd-nspawn', ['-q', '-D', root, '--boot', '--register=no', '--keep-unit', '--private-network', '--pipe'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let nsOut = '';
    nspawn.stdout!.on('data', (b: Buffer) => (nsOut += b));
    nspawn.stderr!.on('data', (b: Buffer) => (nsOut += b));
    const journal = join(root, 'var/log/journal');
    let log = '';
    const t0 = Date.now();
    while (!log.includes('event=listening') && Date.now() - t0 < 60_000) {
      await new Promise((r) => setTimeout(r, 500));
      if (nspawn.exitCode !== null) break;
      if (existsSync(journal)) log = (await run('journalctl', ['-D', journal, '--no-pager', '-o', 'cat', '-u', 'bootkey-server']).catch(() => ({ stdout: '' }))).stdout;
    }
    assert.match(log, new RegExp(`event=listening host=0\\.0\\.0\\.0 port=${port}\\b`), `${log}\n${nsOut}`);
    assert.match(log, /migrating to \/var\/lib\/private\/bootkey/);
    const pid = findPid('/usr/libexec/bootkey/bootkey server --state /var/lib/bootkey');
    assert.ok(pid, 'the service process');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)?.[1].trim();
    assert.not.equal(field('Uid')?.split(/\s+/)[0], '0', 'not root');
    assert.is(field('CapEff'), '0000000000000000');
    assert.is(field('CapBnd'), '0000000000000000');
    assert.is(field('NoNewPrivs'), '1');
    assert.is(field('Seccomp'), '2');
    const st = statSync(join(root, 'var/lib/private/bootkey/master.key'));
    assert.is(st.uid, Number(field('Uid')?.split(/\s+/)[0]), 'the state belongs to the dynamic user');
    assert.is(st.mode & 0o777, 0o600);
    assert.is(statSync(join(root, 'var/lib/private')).mode & 0o777, 0o700);
    // an admin request over TLS, from the service's network namespace
    const state = join(root, 'var/lib/private/bootkey');
    const a = await run('nsenter', ['-t', String(pid), '-n', SEA, 'admin', '--server', `https://127.0.0.1:${port}`, '--ca', join(state, 'ca.pem'), '--admin-token', join(state, 'admin.token'), 'list']);
    assert.match(a.stdout, /\(no machines\)/);
  } finally {
    if (nspawn && nspawn.exitCode === null) {
      nspawn.kill('SIGTERM');
      await new Promise((r) => nspawn!.once('exit', r));
    }
    rmSync(work, { recursive: true, force: true });
  }
});

/** A port free on this host right now (the kernel picks it). */
function freePort(): Promise<number> {
  return new Promise((resolveP, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolveP(port));
    });
  });
}

test.run();
