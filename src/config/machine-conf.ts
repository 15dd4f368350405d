/**
 * `/etc/bootkey/bootkey.conf`, the machine side's configuration (format: conf.ts), read by the
 * initrd agent (copied into the initrd by the dracut module) and by `bootkey enroll`:
 *
 *   deadline = 60                      seconds the initrd agent tries the servers (then the prompt alone)
 *   servers  = https://a:7443, https://b:7443   default --server for `bootkey enroll` (the token then carries them)
 *   ca       = /etc/bootkey/ca.pem     the pinned server CA: default --ca for enroll; the initrd's pin
 *   tpm      = device:/dev/tpmrm0       TPM for the agent (a transport spec; default the device)
 *   eventlog = /sys/kernel/security/tpm0/binary_bios_measurements
 *   enabled  = yes                     no: the agent steps aside (also rd.bootkey=0)
 *
 * At boot, the kernel command line's `rd.bootkey.KEY=` overrides the file. The agent reads the
 * file leniently ({@link loadMachineConf} with strict false: a bad line is skipped, never fatal
 * at boot); `bootkey config check --machine` reads it strictly and names the key and line.
 * @module
 */
import { ConfigError, bool, list, nonEmpty, numberIn, parseConf, validateConf, type ConfEntry, type KeySpec } from './conf.ts';

export const MACHINE_CONF_FILE = '/etc/bootkey/bootkey.conf';
export const DEFAULT_PINNED_CA = '/etc/bootkey/ca.pem';

function serverUrls(v: string): string[] {
  const xs = list(v);
  for (const x of xs) if (!/^(https:\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?\/?$/.test(x)) throw new Error(`"${x.slice(0, 80)}" is not https://HOST[:PORT]`);
  return xs;
}

export const MACHINE_KEYS = {
  deadline: { parse: numberIn(0.001, 3600), doc: 'seconds the initrd agent keeps trying the servers; default 60', example: '60' },
  servers: { parse: serverUrls, doc: 'key-release servers, comma-separated: the default --server of `bootkey enroll`', example: 'https://bootkey.example:7443' },
  ca: { parse: nonEmpty, doc: `the pinned server CA (PEM): the default --ca of enroll, and the initrd's pin; default ${DEFAULT_PINNED_CA}`, example: '/etc/bootkey/ca.pem' },
  tpm: { parse: nonEmpty, doc: 'the TPM the agent uses (transport spec); default the kernel device', example: 'device:/dev/tpmrm0' },
  eventlog: { parse: nonEmpty, doc: 'the firmware event log; default /sys/kernel/security/tpm0/binary_bios_measurements', example: '/sys/kernel/security/tpm0/binary_bios_measurements' },
  enabled: { parse: bool, doc: 'no: the initrd agent steps aside (also rd.bootkey=0); default yes', example: 'yes' },
} satisfies Record<string, KeySpec>;

export type MachineSettings = { [K in keyof typeof MACHINE_KEYS]?: ReturnType<(typeof MACHINE_KEYS)[K]['parse']> };

/**
 * Reads bootkey.conf. strict: the first problem throws ConfigError (file, line, key). Not
 * strict (the initrd): each bad line is skipped and reported in `skipped`.
 */
export function loadMachineConf(text: string, file = MACHINE_CONF_FILE, strict = true): { settings: MachineSettings; skipped: string[] } {
  if (strict) return { settings: validateConf(parseConf(text, file), MACHINE_KEYS, file) as MachineSettings, skipped: [] };
  const settings: Record<string, unknown> = {};
  const skipped: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    try {
      // One line at a time, so that a bad line costs only itself; a later repeat wins.
      const e = parseConf(lines[i], `${file}:${i + 1}`).values().next().value as ConfEntry | undefined;
      if (!e) continue;
      Object.assign(settings, validateConf(new Map([[e.key, { ...e, line: i + 1 }]]), MACHINE_KEYS, file));
    } catch (err) {
      skipped.push(err instanceof ConfigError ? err.message.replace(`${file}:${i + 1}:1`, `${file}:${i + 1}`) : String(err));
    }
  }
  return { settings: settings as MachineSettings, skipped };
}

/** The example file shipped as /etc/bootkey/bootkey.conf (every key commented out). */
export function exampleMachineConf(): string {
  const lines = [
    '# /etc/bootkey/bootkey.conf: bootkey machine settings (format: bootkey.conf(5), docs/CONFIG.md).',
    '# key = value, one per line; # starts a comment line. At boot, rd.bootkey.KEY= on the kernel',
    '# command line overrides a key. Check with: bootkey config check --machine',
    '',
  ];
  for (const [k, s] of Object.entries(MACHINE_KEYS)) lines.push(`# ${s.doc}`, `#${k} = ${s.example}`, '');
  return lines.join('\n');
}
