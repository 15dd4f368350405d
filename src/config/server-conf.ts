/**
 * `/etc/bootkey/server.conf`: every `bootkey server` flag has a key of the same name (format:
 * conf.ts). Precedence, lowest first: built-in defaults < the file < environment variables
 * (`BOOTKEY_` + the key in upper case with `_` for `-`, e.g. BOOTKEY_LISTEN, BOOTKEY_STORE)
 * < command-line flags. Each value is checked the same way whatever its origin, and an error
 * names its origin (`server.conf:7: key "listen": ...`, `BOOTKEY_LISTEN: ...`, `--listen: ...`;
 * the last a UsageError, exit 2, as any bad flag).
 *
 * Runtime attestation failures (issue 12 §4) may also go to a webhook (`webhook-url`, signed with
 * the key in `webhook-secret-file`) and a command hook (`runtime-hook`); src/server/webhook.ts.
 * @module
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.ts';
import { parseListen } from '../server/listen.ts';
import { ConfigError, MAX_CONF_BYTES, intIn, nonEmpty, parseConf, validateConf, type KeySpec } from './conf.ts';

export const SERVER_CONF_FILE = '/etc/bootkey/server.conf';
/** Environment variable naming another configuration file. */
export const CONFIG_ENV = 'BOOTKEY_CONFIG';

export interface Bucket {
  burst: number;
  perSecond: number;
}

function listenAddr(v: string): string {
  parseListen(v); // throws with the reason
  return v;
}
function listenOrOff(v: string): string | null {
  return v === 'off' || v === 'none' ? null : listenAddr(v);
}
function bucket(v: string): Bucket {
  const m = /^(\d{1,6})\/(\d{1,6}(?:\.\d{1,3})?)$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[2]) <= 0) throw new Error(`expected BURST/PER_SECOND (e.g. 60/5), got "${v.slice(0, 40)}"`);
  return { burst: Number(m[1]), perSecond: Number(m[2]) };
}
function httpUrl(v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error(`expected an http:// or https:// URL, got "${v.slice(0, 80)}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`expected an http:// or https:// URL, got "${v.slice(0, 80)}"`);
  if (u.username || u.password) throw new Error('the webhook URL must not carry credentials (sign with webhook-secret-file)');
  return v;
}
function absPath(v: string): string {
  if (!v.startsWith('/')) throw new Error(`expected an absolute path, got "${v.slice(0, 80)}"`);
  return v;
}
function storeSpec(v: string): string {
  if (v === 'sqlite' || /^postgres(ql)?:\/\/[^\s]+$/i.test(v)) return v;
  throw new Error('expected "sqlite" or postgres://USER@HOST:PORT/DB[?pool_max=N]');
}

/** Every key, its parser and one documentation line (docs/SERVER.md lists the same). */
export const SERVER_KEYS = {
  state: { parse: nonEmpty, doc: 'state directory (made by `bootkey server init`); no default', example: '/var/lib/bootkey' },
  listen: { parse: listenAddr, doc: 'HOST:PORT or [IPv6]:PORT of the TLS listener; default 0.0.0.0:7443', example: '0.0.0.0:7443' },
  store: { parse: storeSpec, doc: 'sqlite (STATE/bootkey.db, the default) or postgres://USER@HOST:PORT/DB[?pool_max=N]', example: 'sqlite' },
  'released-pcr': { parse: intIn(0, 23), doc: 'the PCR a client extends after a release; default 15', example: '15' },
  'ek-ca': { parse: nonEmpty, doc: 'PEM bundle of TPM manufacturer CAs; enrolment then requires a chaining EK certificate', example: '/etc/bootkey/ek-ca.pem' },
  'nonce-ttl': { parse: intIn(5, 3600), doc: 'attestation nonce lifetime in seconds; default 60', example: '60' },
  'max-connections': { parse: intIn(1, 100000), doc: 'simultaneous TLS connections; default 128', example: '128' },
  'listen-backlog': { parse: intIn(1, 65535), doc: 'the listen(2) backlog; default 511', example: '511' },
  'rate-limit-peer': { parse: bucket, doc: 'requests per peer address, BURST/PER_SECOND; default 60/5', example: '60/5' },
  'rate-limit-machine': { parse: bucket, doc: 'attestations per machine, BURST/PER_SECOND; default 20/0.5', example: '20/0.5' },
  'message-timeout': { parse: intIn(1, 300), doc: 'seconds to receive one message (and the TLS handshake); default 10', example: '10' },
  'connection-timeout': { parse: intIn(1, 3600), doc: 'seconds a connection may stay open; default 30', example: '30' },
  metrics: { parse: listenOrOff, doc: 'HOST:PORT of the Prometheus listener (plain HTTP, GET /metrics), or off; default off', example: '127.0.0.1:9464' },
  dashboard: { parse: listenOrOff, doc: 'HOST:PORT of the web dashboard (HTTPS, the server certificate), or off; default off', example: '127.0.0.1:7444' },
  'webhook-url': { parse: httpUrl, doc: 'runtime attestation failures are POSTed (JSON) to this URL, retried with backoff; default none', example: 'https://alerts.example.com/bootkey' },
  'webhook-secret-file': { parse: absPath, doc: 'file holding the HMAC-SHA256 key of the X-Bootkey-Signature header (sha256=HEX over the body)', example: '/etc/bootkey/webhook.key' },
  'webhook-attempts': { parse: intIn(1, 20), doc: 'webhook deliveries tried before giving up (backoff 1 s, doubling); default 5', example: '5' },
  'runtime-hook': { parse: absPath, doc: 'executable run on each runtime failure (event JSON on stdin, BOOTKEY_EVENT, BOOTKEY_MACHINE); default none', example: '/usr/local/sbin/bootkey-runtime-failed' },
} satisfies Record<string, KeySpec>;

export type ServerKey = keyof typeof SERVER_KEYS;
export type ServerSettings = { [K in ServerKey]?: ReturnType<(typeof SERVER_KEYS)[K]['parse']> };
export type Origin = 'default' | 'file' | 'env' | 'flag';

export interface ResolvedServerConfig {
  settings: ServerSettings;
  /** Where each set key came from (`file` with its line). */
  origins: Partial<Record<ServerKey, { from: Origin; line?: number }>>;
  /** The file read, if any. */
  file?: string;
}

export function envName(key: string): string {
  return `BOOTKEY_${key.toUpperCase().replace(/-/g, '_')}`;
}

/** Reads a configuration file (bounded); undefined when it does not exist and `optional`. */
export function readConfFile(file: string, optional: boolean): string | undefined {
  let b: Buffer;
  try {
    b = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (optional && code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read the configuration file ${file}: ${code ?? (e as Error).message}`);
  }
  if (b.length > MAX_CONF_BYTES) throw new ConfigError(`${file}: larger than ${MAX_CONF_BYTES} bytes: not a bootkey configuration file`);
  return b.toString('utf8');
}

/**
 * Resolves the server's settings. `configFile`: --config (must exist); else BOOTKEY_CONFIG
 * (must exist); else /etc/bootkey/server.conf when present. `flags`: the raw flag strings.
 * @throws ConfigError naming the key and its origin (file and line, or variable); UsageError for a bad flag
 */
export function resolveServerConfig(o: { configFile?: string; env?: NodeJS.ProcessEnv; flags?: Partial<Record<string, string>>; defaultFile?: string }): ResolvedServerConfig {
  const env = o.env ?? process.env;
  const explicit = o.configFile ?? (env[CONFIG_ENV] || undefined);
  const file = explicit ?? o.defaultFile ?? SERVER_CONF_FILE;
  const text = readConfFile(file, explicit === undefined);
  const settings: Record<string, unknown> = {};
  const origins: ResolvedServerConfig['origins'] = {};
  if (text !== undefined) {
    const entries = parseConf(text, file);
    const hint = (k: string) => (/webhook/.test(k) ? ': the webhook keys are webhook-url, webhook-secret-file, webhook-attempts' : '');
    Object.assign(settings, validateConf(entries, SERVER_KEYS, file, hint));
    for (const e of entries.values()) origins[e.key as ServerKey] = { from: 'file', line: e.line };
  }
  for (const key of Object.keys(SERVER_KEYS) as ServerKey[]) {
    const spec: KeySpec = SERVER_KEYS[key];
    const ev = env[envName(key)];
    if (ev !== undefined && ev !== '') {
      try {
        settings[key] = spec.parse(ev.trim());
      } catch (e) {
        throw new ConfigError(`${envName(key)}: ${(e as Error).message}`, { key });
      }
      origins[key] = { from: 'env' };
    }
    const fv = o.flags?.[key];
    if (fv !== undefined) {
      try {
        settings[key] = spec.parse(fv.trim());
      } catch (e) {
        // A bad flag is a usage error (exit 2), as every other flag's.
        throw new UsageError(`--${key}: ${(e as Error).message}`);
      }
      origins[key] = { from: 'flag' };
    }
  }
  return { settings: settings as ServerSettings, origins, file: text !== undefined ? file : undefined };
}

/** The example file shipped as /etc/bootkey/server.conf (every key, commented out, with its default). */
export function exampleServerConf(): string {
  const lines = [
    '# /etc/bootkey/server.conf: bootkey server settings (format: bootkey.conf(5), docs/CONFIG.md).',
    '# key = value, one per line; # starts a comment line. Environment variables BOOTKEY_<KEY>',
    '# and command-line flags --<key> override these. Check with: bootkey server --check-config',
    '',
  ];
  for (const [k, s] of Object.entries(SERVER_KEYS)) lines.push(`# ${s.doc}`, `#${k} = ${s.example}`, '');
  return lines.join('\n');
}
