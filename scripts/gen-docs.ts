/**
 * Man pages and bash completion generated from the CLI's own registry (src/cli/registry.ts):
 * each command's summary, --help text and options. `npm run package` runs it:
 *   node --import tsx scripts/gen-docs.ts OUTDIR
 * writes OUTDIR/bootkey.8, OUTDIR/bootkey-server.8, OUTDIR/bootkey.conf.5, OUTDIR/server.conf.5,
 * OUTDIR/bootkey.bash. The two file formats' key lists come from the parsers' own tables
 * (src/config/machine-conf.ts MACHINE_KEYS, src/config/server-conf.ts SERVER_KEYS).
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COMMANDS } from '../src/cli/registry.ts';
import type { Command } from '../src/cli/command.ts';
import { VERSION } from '../src/cli/version.ts';
import { MACHINE_KEYS } from '../src/config/machine-conf.ts';
import { SERVER_KEYS } from '../src/config/server-conf.ts';

const DATE = '2026-12-01';
const SERVER_PATHS = ['server', 'admin', 'setup server'];

/** Escapes text for roff: backslashes, and a leading . or ' that would start a request. */
export function roff(text: string): string {
  return text.split('\n').map((l) => l.replace(/\\/g, '\\e').replace(/^([.'])/, '\\&$1')).join('\n');
}

function th(name: string, section: number, title: string): string {
  return `.TH ${name.toUpperCase()} ${section} "${DATE}" "bootkey ${VERSION}" "${title}"\n`;
}

function commandSection(c: Command): string {
  return `.SS "bootkey ${c.path.join(' ')}"\n${roff(c.summary)}.\n.PP\n.nf\n${roff(c.help.trimEnd())}\n.fi\n`;
}

const isServer = (c: Command) => SERVER_PATHS.some((p) => c.path.join(' ') === p || c.path.join(' ').startsWith(p + ' '));

export function bootkey8(cmds: Command[] = COMMANDS): string {
  const machine = cmds.filter((c) => !isServer(c));
  return th('bootkey', 8, 'System Administration') + `.SH NAME
bootkey \\- boot-time remote attestation and LUKS2 unlock with TPM 2.0
.SH SYNOPSIS
.B bootkey
.I command
.RI [ options ]
.br
.B bootkey \\-\\-help
|
.B \\-\\-version
.SH DESCRIPTION
A machine unlocks its LUKS2 root volume at boot only when its measured boot matches the policy it
was enrolled with, proven by a TPM 2.0 quote to a key-release server (bootkey-server(8)). If the
server refuses or cannot be reached, the passphrase prompt still works.
.PP
The machine role is set up with
.BR "bootkey setup machine" ;
the server role with
.B "bootkey setup server"
(bootkey-server(8)). Every command prints its help with
.BR \\-\\-help ;
this page is generated from that help.
.SH COMMANDS
${machine.map(commandSection).join('')}.SH EXIT STATUS
0 success, 1 refused or bad input, 2 usage error;
.B bootkey unlock
also 3: no key-release server reachable before the deadline.
.SH ENVIRONMENT
.TP
.B BOOTKEY_TPM
the TPM when \\-\\-tpm is not given (device:/dev/tpmrm0, swtpm:host=H,port=N, swtpm:path=S).
.TP
.B BOOTKEY_DEBUG
print a stack trace with an error.
.SH FILES
.TP
.I /usr/libexec/bootkey/bootkey
the single executable (also in the initrd); /usr/bin/bootkey links to it.
.TP
.I /etc/bootkey/bootkey.conf
the initrd agent's settings, bootkey.conf(5).
.TP
.I /usr/lib/dracut/modules.d/90bootkey
the dracut module; /etc/dracut.conf.d/90-bootkey.conf adds it (written by bootkey setup machine).
.SH SEE ALSO
bootkey-server(8), bootkey.conf(5), dracut(8), systemd-cryptsetup(8), cryptsetup(8)
`;
}

export function bootkeyServer8(cmds: Command[] = COMMANDS): string {
  const server = cmds.filter(isServer);
  return th('bootkey-server', 8, 'System Administration') + `.SH NAME
bootkey-server \\- the bootkey key-release server, its setup and administration
.SH SYNOPSIS
.B bootkey setup server
.RI [ options ]
.br
.B systemctl start bootkey-server.service
.br
.B bootkey admin
.I op
.RI [ options ]
.SH DESCRIPTION
The key-release server verifies a machine's TPM quote and measured-boot event log against the
machine's policy and releases its key share sealed to the machine's TPM. It runs as
.B bootkey-server.service
under a transient system user (DynamicUser=) with its state in
.I /var/lib/bootkey
(a link to /var/lib/private/bootkey, mode 0700), TLS 1.3 on port 7443 by default.
This page is generated from the commands' help.
.SH COMMANDS
${server.map(commandSection).join('')}.SH CONFIGURATION
Settings of the service:
.IR /etc/bootkey/server.conf ,
see server.conf(5); then
.BR "systemctl restart bootkey-server" .
Secrets (a PostgreSQL password in the store URL, the master key) do not belong there: use a
drop-in
.RB ( "systemctl edit bootkey-server" )
with a root-only EnvironmentFile= or LoadCredential=.
.SH FILES
.TP
.I /var/lib/bootkey
state: ca.pem, server.pem, server.key, token-signing.key, master.key, admin.token (0600), bootkey.db.
.TP
.I /var/lib/bootkey-ca
the CA private key (root, 0700); no server needs it: keep it offline.
.TP
.I /etc/bootkey/server.conf
the service's settings (example installed by the package).
.TP
.I /usr/libexec/bootkey/better_sqlite3.node
the SQLite addon the single executable loads for the default store.
.SH SEE ALSO
bootkey(8), server.conf(5), bootkey.conf(5), systemd.exec(5), systemd-analyze(1)
`;
}

function keysSection(keys: Record<string, { doc: string; example: string }>): string {
  return Object.entries(keys).map(([k, v]) => `.TP\n.B "${k} = ${roff(v.example)}"\n${roff(v.doc)}.\n`).join('');
}

const FORMAT = `.SH FORMAT
UTF-8 text, one
.I "key = value"
per line, at most 64 KiB. Blank lines and lines starting with # or ; are comments; there are no
trailing comments (everything after the first = is the value, trimmed). A value may be wrapped in
double quotes to keep blanks. An unknown key, a key given twice, a [section] line or a line without
= is an error naming the file, the line and the key (docs/CONFIG.md).
`;

/** bootkey.conf(5): the keys of src/config/machine-conf.ts MACHINE_KEYS, with their docs. */
export function bootkeyConf5(): string {
  return th('bootkey.conf', 5, 'File Formats') + `.SH NAME
bootkey.conf \\- settings of the bootkey machine side (initrd agent, bootkey enroll)
.SH SYNOPSIS
.I /etc/bootkey/bootkey.conf
.SH DESCRIPTION
Read by
.B bootkey initrd\\-agent
(bootkey-askpass.service in the initrd; leniently: a bad line is skipped, never fatal at boot) and
by
.BR "bootkey enroll" .
The dracut module copies the file into the initrd: regenerate the initrd after a change.
.B "bootkey config check \\-\\-machine"
reads it strictly and names the key and line of a problem;
.B "bootkey config example \\-\\-machine"
prints the file the package installs.
${FORMAT}.SH KEYS
${keysSection(MACHINE_KEYS)}.SH KERNEL COMMAND LINE
Overrides the file for one boot:
.B rd.bootkey=0
disables the agent;
.BI rd.bootkey. key = value
sets a key, e.g. rd.bootkey.deadline=30.
.SH SEE ALSO
bootkey(8), server.conf(5), bootkey-server(8), dracut.cmdline(7)
`;
}

/** server.conf(5): the keys of src/config/server-conf.ts SERVER_KEYS (each also a flag and BOOTKEY_KEY). */
export function serverConf5(): string {
  return th('server.conf', 5, 'File Formats') + `.SH NAME
server.conf \\- settings of the bootkey key-release server
.SH SYNOPSIS
.I /etc/bootkey/server.conf
.SH DESCRIPTION
Read by
.BR "bootkey server" ,
also as bootkey-server.service. Every key is also a flag
.BI \\-\\- key
and an environment variable
.BI BOOTKEY_ KEY
(upper case, \\- becomes _). Precedence, lowest first: default, this file, environment, flag.
The packaged unit passes
.B \\-\\-state
(its StateDirectory), so
.B state
here is overridden there.
.B "bootkey server \\-\\-check\\-config"
prints the effective settings with their origin and names the key and line of a problem.
The file is readable by the service's transient user: never put a secret in it (a PostgreSQL
password goes into
.B BOOTKEY_STORE
in a root-only EnvironmentFile= of a drop-in).
${FORMAT}.SH KEYS
${keysSection(SERVER_KEYS)}.SH SEE ALSO
bootkey-server(8), bootkey.conf(5), bootkey(8)
`;
}

/** Bash completion: subcommands by prefix, then that command's options, else files. */
export function bashCompletion(cmds: Command[] = COMMANDS): string {
  const paths = cmds.map((c) => c.path.join(' '));
  const cases = cmds
    .map((c) => `        '${c.path.join(' ')}') opts='${Object.keys(c.options).map((o) => `--${o}`).sort().join(' ')} --help' ;;`)
    .join('\n');
  return `# bash completion for bootkey, generated from its command registry (scripts/gen-docs.ts)
_bootkey() {
    local cur=\${COMP_WORDS[COMP_CWORD]} path='' w i opts next
    local -a paths=(${paths.map((p) => `'${p}'`).join(' ')})
    # the longest command path the words typed so far spell
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=\${COMP_WORDS[i]}
        [[ $w == -* ]] && break
        for next in "\${paths[@]}"; do
            if [[ $next == "\${path:+$path }$w" || $next == "\${path:+$path }$w "* ]]; then path=\${path:+$path }$w; break; fi
        done
    done
    case $path in
${cases}
        *) opts='' ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return
    fi
    local subs=''
    for next in "\${paths[@]}"; do
        if [[ -z $path ]]; then subs+=" \${next%% *}"
        elif [[ $next == "$path "* ]]; then w=\${next#"$path "}; subs+=" \${w%% *}"
        fi
    done
    [[ -z $path ]] && subs+=' --help --version'
    if [[ -n $subs ]]; then mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur" | sort -u); fi
    [[ \${#COMPREPLY[@]} -eq 0 ]] && mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}
complete -o filenames -F _bootkey bootkey
`;
}

export function writeDocs(out: string): string[] {
  mkdirSync(out, { recursive: true });
  const files: [string, string][] = [
    ['bootkey.8', bootkey8()], ['bootkey-server.8', bootkeyServer8()], ['bootkey.conf.5', bootkeyConf5()], ['server.conf.5', serverConf5()],
    ['bootkey.bash', bashCompletion()],
  ];
  for (const [n, t] of files) writeFileSync(join(out, n), t);
  return files.map(([n]) => join(out, n));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = process.argv[2];
  if (!out) {
    process.stderr.write('usage: gen-docs.ts OUTDIR\n');
    process.exit(2);
  }
  for (const f of writeDocs(out)) process.stdout.write(`gen-docs: ${f}\n`);
}
