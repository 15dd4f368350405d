/**
 * `bootkey server init`: the state directory (mode 0700) with a private CA and the server's
 * TLS certificate (ECDSA P-256, made with the `openssl` CLI since node:crypto cannot create
 * X.509 certificates), the master key, the token-signing key and the admin token. Idempotent:
 * existing files are kept, missing ones are created (delete server.pem/server.key to re-issue
 * the server certificate, e.g. with new --san names; that needs the CA directory).
 *
 *   STATE/ca.pem                      the CA clients pin (`--ca`)
 *   STATE/server.pem, server.key      SANs: localhost, 127.0.0.1, ::1, 10.0.2.2 (QEMU's host) + --san
 *   STATE/token-signing.key (0600)    Ed25519; signs each machine's LUKS2 token statement
 *   STATE/master.key (0600)           32 random bytes; encrypts server shares in the database
 *   STATE/admin.token (0600)          admin authorisation (enrolment uses enrolment tokens)
 *   STATE/bootkey.db                  SQLite (created by the first start or init)
 *   CADIR/ca.key (0600)               the CA's private key, OUTSIDE the state directory
 *                                     (default: the sibling directory STATE-ca, mode 0700):
 *                                     no server or replica needs it; keep it offline
 *
 * A ca.key found inside STATE (made by an older init) is moved to CADIR.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ServerError } from './errors.ts';
import { generateKeyPairSync } from 'node:crypto';
import { renameSync, copyFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createMasterKeyFile } from './secrets.ts';
import { ADMIN_TOKEN_FILE, DB_FILE, TOKEN_SIGNING_KEY_FILE } from './server.ts';
import { SqliteStore } from './store-sqlite.ts';

export const DEFAULT_SANS = ['localhost', '127.0.0.1', '::1', '10.0.2.2'];

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; code?: string; message: string };
    if (err.code === 'ENOENT') throw new ServerError('OPENSSL', 'the `openssl` command is not installed (Debian: apt-get install openssl)');
    throw new ServerError('OPENSSL', `openssl ${args[0]} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}

function sanLines(sans: string[]): string {
  const dns: string[] = [];
  const ips: string[] = [];
  for (const s of sans) {
    if (isIP(s)) ips.push(s);
    else if (/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(s)) dns.push(s);
    else throw new ServerError('CONFIG', `--san "${s}" is neither an IP address nor a DNS name`);
  }
  return [...[...new Set(dns)].map((d, i) => `DNS.${i + 1} = ${d}`), ...[...new Set(ips)].map((a, i) => `IP.${i + 1} = ${a}`)].join('\n');
}

export interface InitResult {
  dir: string;
  /** Where the CA's private key is (not in `dir`). */
  caDir: string;
  created: string[];
  kept: string[];
  /** Files moved out of the state directory (an old STATE/ca.key). */
  moved: string[];
}

/** The default CA directory: the state directory's sibling "STATE-ca". */
export function defaultCaDir(stateDir: string): string {
  return resolve(stateDir) + '-ca';
}

export async function initState(dir: string, opts: { sans?: string[]; days?: number; caDir?: string } = {}): Promise<InitResult> {
  const created: string[] = [];
  const kept: string[] = [];
  const moved: string[] = [];
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
  chmodSync(dir, 0o700);
  const caDir = resolve(opts.caDir ?? defaultCaDir(dir));
  if (caDir === resolve(dir)) throw new ServerError('CONFIG', '--ca-dir must not be the state directory (replicas copy the state directory; the CA key must stay out of it)');
  if (!existsSync(caDir)) mkdirSync(caDir, { recursive: true, mode: 0o700 });
  chmodSync(caDir, 0o700);
  const caKey = join(caDir, 'ca.key');
  if (existsSync(join(dir, 'ca.key'))) {
    if (existsSync(caKey)) throw new ServerError('CONFIG', `both ${join(dir, 'ca.key')} and ${caKey} exist: keep the right one in ${caDir} and remove the other`);
    try {
      renameSync(join(dir, 'ca.key'), caKey);
    } catch {
      copyFileSync(join(dir, 'ca.key'), caKey);
      rmSync(join(dir, 'ca.key'));
    }
    chmodSync(caKey, 0o600);
    moved.push(`ca.key → ${caKey}`);
  }
  const has = (f: string) => existsSync(join(dir, f));
  const tmp = mkdtempSync(join(dir, '.init-'));
  try {
    const cnf = join(tmp, 'openssl.cnf');
    const sans = [...DEFAULT_SANS, ...(opts.sans ?? [])];
    writeFileSync(cnf, `[req]
distinguished_name = dn
prompt = no
[dn]
CN = bootkey
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt
[alt]
${sanLines(sans)}
`, { mode: 0o600 });
    const serial = () => '0x' + randomBytes(16).toString('hex').replace(/^[89a-f]/, '7');
    let newCa = false;
    if (!has('ca.pem')) {
      if (existsSync(caKey)) throw new ServerError('CONFIG', `${caKey} exists but ${join(dir, 'ca.pem')} does not: restore ca.pem (or remove the CA key to start a new CA)`);
      if (has('server.pem')) rmSync(join(dir, 'server.pem'));
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', caKey], dir);
      chmodSync(caKey, 0o600);
      openssl(['req', '-config', cnf, '-new', '-x509', '-key', caKey, '-out', 'ca.pem', '-days', String(opts.days ?? 3650),
        '-extensions', 'v3_ca', '-set_serial', serial(), '-subj', `/CN=bootkey CA ${hostname().replace(/[^A-Za-z0-9.-]/g, '')}/O=bootkey`], dir);
      created.push(caKey, 'ca.pem');
      newCa = true;
    } else kept.push('ca.pem');
    if (newCa || !has('server.key') || !has('server.pem')) {
      if (!existsSync(caKey)) throw new ServerError('CONFIG', `issuing server.pem needs the CA key, which is not at ${caKey} (give --ca-dir DIR where ca.key is kept offline)`);
      if (!has('server.key')) {
        openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'server.key'], dir);
        created.push('server.key');
      } else kept.push('server.key');
      chmodSync(join(dir, 'server.key'), 0o600);
      const csr = join(tmp, 'server.csr');
      openssl(['req', '-config', cnf, '-new', '-key', 'server.key', '-out', csr, '-subj', '/CN=bootkey server/O=bootkey'], dir);
      openssl(['x509', '-req', '-in', csr, '-CA', 'ca.pem', '-CAkey', caKey, '-set_serial', serial(), '-days', String(Math.min(opts.days ?? 825, 825)),
        '-extfile', cnf, '-extensions', 'v3_server', '-out', 'server.pem'], dir);
      created.push('server.pem');
    } else kept.push('server.key', 'server.pem');
    if (!has('master.key')) {
      createMasterKeyFile(dir);
      created.push('master.key');
    } else kept.push('master.key');
    if (!has(TOKEN_SIGNING_KEY_FILE)) {
      const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
      writeFileSync(join(dir, TOKEN_SIGNING_KEY_FILE), pem, { mode: 0o600, flag: 'wx' });
      created.push(TOKEN_SIGNING_KEY_FILE);
    } else kept.push(TOKEN_SIGNING_KEY_FILE);
    if (!has(ADMIN_TOKEN_FILE)) {
      writeFileSync(join(dir, ADMIN_TOKEN_FILE), randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
      created.push(ADMIN_TOKEN_FILE);
    } else kept.push(ADMIN_TOKEN_FILE);
    for (const f of ['server.key', 'master.key', TOKEN_SIGNING_KEY_FILE, ADMIN_TOKEN_FILE]) {
      if ((statSync(join(dir, f)).mode & 0o077) !== 0) chmodSync(join(dir, f), 0o600);
    }
    if (existsSync(caKey) && (statSync(caKey).mode & 0o077) !== 0) chmodSync(caKey, 0o600);
    const db = !has(DB_FILE);
    const store = new SqliteStore(join(dir, DB_FILE));
    await store.migrate();
    await store.close();
    if (db) {
      chmodSync(join(dir, DB_FILE), 0o600);
      created.push(DB_FILE);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { dir, caDir, created, kept, moved };
}
