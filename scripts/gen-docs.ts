/**
 * Man pages and bash completion generated from the CLI's own registry (src/cli/registry.ts):
 * each command's summary, --help text and options. `npm run package` runs it:
 *   node --import tsx scripts/gen-docs.ts OUTDIR
 * writes OUTDIR/bootkey.8, OUTDIR/bootkey-server.8, OUTDIR/bootkey.conf.5, OUTDIR/bootkey.bash.
 * bootkey.conf(5) documents the machine-side keys that src/initrd/agent.ts loadConfig reads
 * (test/packaging/docs.test.ts checks each against it).
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COMMANDS } from '../src/cli/registry.ts';
import type { Command } from '../src/cli/command.ts';
import { VERSION } from '../src/cli/version.ts';

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
Settings of the service: see server.conf(5) when the installed bootkey has it (issue 13, one
configuration file); otherwise give options to
.B bootkey server
in a drop-in
.RB ( "systemctl edit bootkey-server" ),
for example
.nf
[Service]
ExecStart=
ExecStart=/usr/libexec/bootkey/bootkey server \\-\\-state ${'$'}{STATE_DIRECTORY} \\-\\-listen 0.0.0.0:7443
.fi
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
bootkey(8), bootkey.conf(5), systemd.exec(5), systemd-analyze(1)
`;
}

/** The machine keys (src/initrd/agent.ts loadConfig), with an example value each. */
export const MACHINE_KEYS: { key: string; example: string; text: string }[] = [
  { key: 'deadline', example: '90', text: 'seconds (0 < S \\(<= 3600, default 60) the initrd agent tries to reach a key-release server before it steps aside; the passphrase prompt is up all the time.' },
  { key: 'tpm', example: 'device:/dev/tpmrm0', text: 'the TPM (default device:/dev/tpmrm0).' },
  { key: 'eventlog', example: '/sys/kernel/security/tpm0/binary_bios_measurements', text: 'the measured-boot event log sent with the quote (this is the default).' },
  { key: 'enabled', example: 'no', text: '0, no or false: the agent does nothing (the passphrase prompt only); anything else: on (default).' },
];

export function bootkeyConf5(): string {
  return th('bootkey.conf', 5, 'File Formats') + `.SH NAME
bootkey.conf \\- settings of the bootkey agent in the initrd
.SH SYNOPSIS
.I /etc/bootkey/bootkey.conf
.SH DESCRIPTION
Read by
.B bootkey initrd\\-agent
(bootkey-askpass.service in the initrd); the dracut module copies the file into the initrd, so
regenerate the initrd after a change. One
.IB key = value
per line; lines starting with # and unknown keys are ignored, as are values out of range (the
default stays). The servers, the pinned CA and the machine identity are not here: they are in
each volume's LUKS2 token, written by bootkey enroll.
.SH KEYS
${MACHINE_KEYS.map((k) => `.TP\n.BI ${k.key}= ${k.example}\n${k.text}\n`).join('')}.SH KERNEL COMMAND LINE
Overrides the file for one boot:
.B rd.bootkey=0
disables the agent;
.BI rd.bootkey. key = value
sets a key, e.g. rd.bootkey.deadline=30.
.SH EXAMPLE
.nf
# /etc/bootkey/bootkey.conf
deadline=90
.fi
.SH SEE ALSO
bootkey(8), bootkey-server(8), dracut.cmdline(7)
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
    ['bootkey.8', bootkey8()], ['bootkey-server.8', bootkeyServer8()], ['bootkey.conf.5', bootkeyConf5()], ['bootkey.bash', bashCompletion()],
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
