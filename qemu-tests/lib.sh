# shellcheck shell=bash
# Building blocks for measured QEMU boots (OVMF + swtpm, TCG). Source this file:
#   . qemu-tests/lib.sh
# Every function is self-contained and reusable by later whole-boot tests:
#   bk_fetch_kernel                  Debian kernel into $BK_WORK (cached), sets BK_KVER BK_KDIR BK_VMLINUZ
#   bk_build_initramfs OUT INIT [SRC:DEST ...]   busybox-static initramfs, reproducible cpio + zstd
#   bk_build_uki OUT VMLINUZ INITRD CMDLINE [OSREL]  systemd-stub UKI via objcopy (bookworm: no ukify)
#   bk_sign OUT IN                   sbsign with OVMF's snakeoil PK/KEK key
#   bk_build_esp OUT SRC:DEST ...    GPT disk image with one FAT ESP, fixed GUIDs, no mount (mtools)
#   bk_boot DIR ESP sb|nosb [qemu args...]   fresh swtpm (banks: $BK_PCR_BANKS, default sha1,sha256)
#                                    + OVMF boot; console -> DIR/console.log,
#                                    guest's ttyS1 -> DIR/data.txt; returns qemu's status
#   bk_extract DATA NAME OUT         one "=== BEGIN NAME"/"=== END NAME" base64 block of DATA -> OUT
#   bk_pcrs_json PCRTEXT [BANKS]     "bank index HEX" lines -> bootkey's PCR JSON
#   bk_check_replay LOG PCRS_JSON    tpm2_eventlog's replay of LOG must equal the JSON's PCRs
# Also sets SOURCE_DATE_EPOCH (reproducible initramfs/UKI) and `set -euo pipefail`.
# Requirements (Debian 12): qemu-system-x86 ovmf swtpm swtpm-tools systemd-boot-efi mtools
# dosfstools fdisk busybox-static cpio zstd binutils sbsigntool.

set -euo pipefail

BK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BK_WORK=${BK_WORK:-$BK_ROOT/qemu-tests/work}
BK_TIMEOUT=${BK_TIMEOUT:-180}       # hard limit per qemu run, seconds
BK_MEM=${BK_MEM:-512}
BK_OVMF_DIR=/usr/share/OVMF
BK_SNAKEOIL=/usr/share/ovmf/PkKek-1-snakeoil
BK_STUB=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
BK_SDBOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

bk_log() { echo "[bk] $*" >&2; }

# The Debian kernel linux-image-amd64 currently depends on, unpacked (dpkg -x) into $BK_WORK.
# BK_KVER may be preset (e.g. BK_KVER=6.1.0-56-amd64) to pin a version that is already cached.
bk_fetch_kernel() {
  mkdir -p "$BK_WORK/deb"
  if [ -z "${BK_KVER:-}" ]; then
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$pkg" ] || { bk_log "cannot resolve linux-image-amd64 (apt-get update?)"; return 1; }
    BK_KVER=${pkg#linux-image-}
  fi
  BK_KDIR=$BK_WORK/kernel-$BK_KVER
  BK_VMLINUZ=$BK_KDIR/boot/vmlinuz-$BK_KVER
  if [ ! -f "$BK_VMLINUZ" ]; then
    bk_log "fetching linux-image-$BK_KVER"
    # Sandbox user root: the work dir is not readable by _apt.
    (cd "$BK_WORK/deb" && apt-get -q -o APT::Sandbox::User=root download "linux-image-$BK_KVER")
    rm -rf "$BK_KDIR.tmp" && dpkg -x "$BK_WORK"/deb/linux-image-"$BK_KVER"_*.deb "$BK_KDIR.tmp"
    mv "$BK_KDIR.tmp" "$BK_KDIR"
  fi
  export BK_KVER BK_KDIR BK_VMLINUZ
}

# bk_build_initramfs OUT INIT [SRC:DEST ...]
# A busybox-static initramfs: /bin/busybox + applet links, INIT as /init, extra files.
# Reproducible: fixed mtimes, sorted entries, root-owned, newc, zstd.
bk_build_initramfs() {
  local out=$1 init=$2; shift 2
  local d; d=$(mktemp -d)
  mkdir -p "$d"/{bin,dev,proc,sys,run,tmp,mnt}
  cp /bin/busybox "$d/bin/busybox"
  local a
  for a in $("$d/bin/busybox" --list); do [ -e "$d/bin/$a" ] || ln -s busybox "$d/bin/$a"; done
  install -m 0755 "$init" "$d/init"
  local spec
  for spec in "$@"; do
    mkdir -p "$d/$(dirname "${spec#*:}")"; cp -a "${spec%%:*}" "$d/${spec#*:}"
  done
  find "$d" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  (cd "$d" && find . -mindepth 1 | LC_ALL=C sort |
     cpio --quiet -o -H newc --reproducible -R 0:0) | zstd -q -19 -T0 -f -o "$out"
  rm -rf "$d"
}

# bk_build_uki OUT VMLINUZ INITRD CMDLINE [OSREL]
# Sections after the stub's image end, each 64 KiB-aligned (systemd-stub reads them by VMA).
bk_build_uki() {
  local out=$1 vmlinuz=$2 initrd=$3 cmdline=$4 osrel=${5:-}
  local d; d=$(mktemp -d)
  printf '%s' "$cmdline" >"$d/cmdline"
  if [ -z "$osrel" ]; then
    osrel=$d/os-release
    printf 'NAME="bootkey test"\nID=bootkey-test\nVERSION_ID=1\nPRETTY_NAME="bootkey measured-boot test"\n' >"$osrel"
  fi
  # End of the stub image (SizeOfImage, hex) -> first free VMA.
  local next; next=$((0x$(objdump -p "$BK_STUB" | awk '/SizeOfImage/{print $2}')))
  local args=() s f size
  for s in osrel:"$osrel" cmdline:"$d/cmdline" linux:"$vmlinuz" initrd:"$initrd"; do
    f=${s#*:}; size=$(stat -c %s "$f")
    next=$(( (next + 0xffff) & ~0xffff ))
    args+=(--add-section ".${s%%:*}=$f" --change-section-vma ".${s%%:*}=$(printf 0x%x "$next")")
    next=$((next + size))
  done
  objcopy "${args[@]}" "$BK_STUB" "$out"
  bk_pe_fix_timestamp "$out"
  rm -rf "$d"
}

# objcopy stamps the PE header with the current time (TimeDateStamp, which the Authenticode
# digest covers, so PCR 4 would change on every build) and recomputes CheckSum. Set the stamp to
# $SOURCE_DATE_EPOCH and zero the checksum (= "none"; UEFI ignores it).
bk_pe_fix_timestamp() {
  local pe; pe=$(od -An -tu4 -j 60 -N 4 "$1" | tr -d ' ')
  local t=$SOURCE_DATE_EPOCH le=""
  local i; for i in 0 1 2 3; do le=$le$(printf '\\x%02x' $(( (t >> (8 * i)) & 255 ))); done
  printf "$le" | dd of="$1" bs=1 seek=$((pe + 8)) conv=notrunc status=none
  printf '\x00\x00\x00\x00' | dd of="$1" bs=1 seek=$((pe + 88)) conv=notrunc status=none
}

# bk_sign OUT IN: Authenticode-sign with the snakeoil key OVMF_VARS_4M.snakeoil.fd trusts (db).
# The key is encrypted (passphrase "snakeoil") and sbsign can only prompt on a tty: decrypt first.
bk_sign() {
  local d; d=$(mktemp -d)
  openssl pkey -in "$BK_SNAKEOIL.key" -passin pass:snakeoil -out "$d/key.pem"
  sbsign --key "$d/key.pem" --cert "$BK_SNAKEOIL.pem" --output "$1" "$2" 2>"$d/err" ||
    { cat "$d/err" >&2; rm -rf "$d"; return 1; }
  rm -rf "$d"
}

# bk_build_esp OUT SRC:DEST ...  (DEST like EFI/BOOT/BOOTX64.EFI)
# 1 MiB GPT header area + FAT32 ESP sized to the payload. Fixed disk/partition GUIDs and FAT
# volume id, so OVMF's EV_EFI_GPT_EVENT (PCR5) and the boot device paths are reproducible.
bk_build_esp() {
  local out=$1; shift
  local spec total=0
  for spec in "$@"; do total=$((total + $(stat -c %s "${spec%%:*}"))); done
  local mib=$(( total / 1048576 + 40 ))          # FAT32 needs >= 33 MiB of clusters anyway
  local d; d=$(mktemp -d)
  rm -f "$d/fat" && mkfs.vfat -C -F 32 -n BOOTKEYESP -i 0b00c0de "$d/fat" $((mib * 1024)) >/dev/null
  local dir
  for spec in "$@"; do
    local dest=${spec#*:} p=""
    for dir in $(dirname "$dest" | tr / ' '); do
      p=$p/$dir; [ "$p" = /. ] || mmd -D s -i "$d/fat" "::$p" 2>/dev/null || true
    done
    mcopy -m -o -i "$d/fat" "${spec%%:*}" "::/$dest"
  done
  truncate -s $(((mib + 2) * 1048576)) "$out.tmp"
  sfdisk -q "$out.tmp" <<EOF
label: gpt
label-id: 0B0071E5-0000-4000-8000-000000000001
first-lba: 2048
start=2048, size=$((mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0B0071E5-0000-4000-8000-0000000000E5, name="ESP"
EOF
  dd if="$d/fat" of="$out.tmp" bs=1M seek=1 conv=notrunc status=none
  mv "$out.tmp" "$out"
  rm -rf "$d"
}

# bk_boot DIR ESP sb|nosb [extra qemu args...]
# Fresh swtpm (PCR banks $BK_PCR_BANKS, default sha1,sha256) in DIR/tpm, fresh OVMF vars, ESP as virtio-blk, no NIC.
# Console (ttyS0) -> DIR/console.log, guest ttyS1 -> DIR/data.txt. Knobs for later tests:
#   BK_TPM_STATE_FROM=D  start from a copy of swtpm state dir D (e.g. after systemd-cryptenroll)
#   BK_CONSOLE=S         qemu -serial spec for ttyS0 instead of file:DIR/console.log (e.g. chardev:ser0
#                        with a -chardev socket,...,server=on,wait=on in the extra args)
#   BK_SMP=N             vCPUs (default 1)
bk_boot() {
  local dir=$1 esp=$2 sb=$3; shift 3
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
  rm -rf "$dir/tpm" && mkdir -p "$dir/tpm"
  if [ -n "${BK_TPM_STATE_FROM:-}" ]; then
    cp -a "$BK_TPM_STATE_FROM"/. "$dir/tpm/"
  else
    swtpm_setup --tpm2 --tpmstate "$dir/tpm" --pcr-banks "${BK_PCR_BANKS:-sha1,sha256}" --overwrite >"$dir/swtpm_setup.log" 2>&1
  fi
  swtpm socket --tpm2 --tpmstate dir="$dir/tpm" --ctrl type=unixio,path="$dir/swtpm.sock" \
    --terminate --log file="$dir/swtpm.log" &
  local swtpm_pid=$!
  local i; for i in $(seq 50); do [ -S "$dir/swtpm.sock" ] && break; sleep 0.1; done

  local code vars machine=q35 fw=()
  if [ "$sb" = sb ]; then
    code=$BK_OVMF_DIR/OVMF_CODE_4M.secboot.fd vars=$BK_OVMF_DIR/OVMF_VARS_4M.snakeoil.fd
    machine=q35,smm=on
    fw=(-global driver=cfi.pflash01,property=secure,value=on -global ICH9-LPC.disable_s3=1)
  else
    code=$BK_OVMF_DIR/OVMF_CODE_4M.fd vars=$BK_OVMF_DIR/OVMF_VARS_4M.fd
  fi
  cp "$vars" "$dir/vars.fd"
  rm -f "$dir/console.log" "$dir/data.txt"
  local t0 rc=0; t0=$(date +%s%N)
  timeout --kill-after=10 "$BK_TIMEOUT" qemu-system-x86_64 \
    -machine "$machine" -accel tcg -m "$BK_MEM" -smp "${BK_SMP:-1}" -display none -no-reboot -nic none \
    "${fw[@]}" \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$code" \
    -drive if=pflash,format=raw,unit=1,file="$dir/vars.fd" \
    -chardev socket,id=chrtpm,path="$dir/swtpm.sock" \
    -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
    -drive if=none,id=esp,format=raw,file="$esp" -device virtio-blk-pci,drive=esp,bootindex=1 \
    -serial "${BK_CONSOLE:-file:$dir/console.log}" -serial file:"$dir/data.txt" \
    "$@" || rc=$?
  BK_BOOT_SECONDS=$(( ($(date +%s%N) - t0) / 1000000 ))  # milliseconds, despite the name
  BK_BOOT_SECONDS=$((BK_BOOT_SECONDS / 1000)).$(printf %03d $((BK_BOOT_SECONDS % 1000)))
  kill "$swtpm_pid" 2>/dev/null || true; wait "$swtpm_pid" 2>/dev/null || true
  export BK_BOOT_SECONDS
  return $rc
}

# bk_extract DATA NAME OUT: decode the base64 block the guest wrote between markers.
bk_extract() {
  tr -d '\r' <"$1" | awk -v n="$2" '$0=="=== END " n{p=0} p{print} $0=="=== BEGIN " n{p=1}' |
    base64 -d >"$3"
}

# bk_pcrs_json PCRTEXT [BANKS]: lines "bank index HEX" -> {"sha1": {"0": "hex", ...}, "sha256": {...}}
# BANKS (default "sha1 sha256"): which banks to write, in that order, when present.
bk_pcrs_json() {
  tr -d '\r' <"$1" | awk -v want="${2:-sha1 sha256}" '
    NF==3 { v[$1 "," $2]=tolower($3); seen[$1]=1 }
    END {
      printf "{"; nb=0
      n=split(want, banks, " ")
      for (b=1; b<=n; b++) { bank=banks[b]; if (!(bank in seen)) continue
        printf "%s\n  \"%s\": {", (nb++ ? "," : ""), bank
        for (i=0; i<24; i++) printf "%s\"%d\": \"%s\"", (i ? ", " : ""), i, v[bank "," i]
        printf "}" }
      print "\n}" }'
}

# bk_check_replay LOG PCRS_JSON: tpm2-tools' own replay (tpm2_eventlog) of LOG must equal the
# PCRs the guest read, for every PCR the log extends. Independent of bootkey's parser.
bk_check_replay() {
  local bad
  bad=$(tpm2_eventlog "$1" 2>/dev/null | awk '
      /^pcrs:/ {p=1; next}  p && /^  [a-z0-9]+:$/ {bank=$1; sub(":", "", bank); next}
      p && /^ +[0-9]+ +: 0x/ {print bank, $1, tolower(substr($3, 3))}' |
    while read -r bank i v; do
      grep -q "\"$bank\":" "$2" || continue    # bank not recorded in the JSON
      grep -q "\"$i\": \"$v\"" <(sed -n "s/.*\"$bank\": {\(.*\)}.*/\1/p" "$2" | tr ',' '\n') ||
        echo "$bank:$i"
    done)
  [ -z "$bad" ] || { bk_log "tpm2_eventlog replay differs from the TPM: $bad"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# Whole-boot building blocks (issue 5): dracut systemd initrd + bootkey module, LUKS2 root image,
# host server, console driver. Requirements besides the above: dracut-core dracut-network
# (Debian: never the `dracut` package, it conflicts with initramfs-tools), cryptsetup-bin,
# e2fsprogs, python3. Nothing on the host's boot or /usr/lib/dracut is changed.
#   bk_key FILE...                   sha256 of files/strings: cache keys
#   bk_dracut_base                   $BK_WORK/dracut-base = /usr/lib/dracut + our 90bootkey module,
#                                    $BK_WORK/libexec/bootkey/bootkey = dist/bootkey-linux-x64
#   bk_build_dracut OUT with|without|tpm2 [CA]   systemd initrd (zstd) with/without the bootkey
#                                    module, or without it + tpm2-tss (systemd-cryptenroll's unlock)
#   bk_build_rootimg OUT PASSFILE DIR      ext4 of DIR, encrypted offline to LUKS2 (PBKDF2 1000)
#   bk_rootfs DIR MARKER             busybox + /sbin/init (marker, control script, poweroff) + the
#                                    SEA + cryptsetup with its libraries
#   bk_free_port [COUNT]             a free port P on 127.0.0.1 (P..P+COUNT-1 all free): never fixed ports
#   bk_server_start DIR PORT / bk_server_stop DIR   `bootkey server` on 127.0.0.1:PORT (node); fails
#                                    loudly (its own log lines) when it cannot bind, never a later TLS error
#   bk_enrol_token DIR PORT COMMENT  a one-use enrolment token from that server (the admin token
#                                    stays on the host; the guest gets only this)
#   bk_console SOCK LOG [PATTERN=REPLY ...]   python3 console driver (background): logs the serial
#                                    console, types REPLY + CR when PATTERN (a regex) first shows
# ---------------------------------------------------------------------------------------------

bk_key() { local a; for a in "$@"; do if [ -f "$a" ]; then sha256sum <"$a"; else printf '%s\n' "$a"; fi; done | sha256sum | cut -c1-16; }

bk_depmod() {
  [ -f "$BK_KDIR/lib/modules/$BK_KVER/modules.dep" ] || depmod -b "$BK_KDIR" "$BK_KVER"
}

bk_dracut_base() {
  local sea=$BK_ROOT/dist/bootkey-linux-x64
  [ -x "$sea" ] || { bk_log "no $sea: npm run build first"; return 1; }
  rm -rf "$BK_WORK/dracut-base" "$BK_WORK/libexec"
  cp -a /usr/lib/dracut "$BK_WORK/dracut-base"
  DRACUTMODDIR=$BK_WORK/dracut-base/modules.d LIBEXECDIR=$BK_WORK/libexec \
    sh "$BK_ROOT/dracut/install.sh" "$sea" >/dev/null
  export BOOTKEY_BIN=$BK_WORK/libexec/bootkey/bootkey
}

BK_DRACUT_MODULES="systemd systemd-initrd systemd-ask-password systemd-udevd systemd-journald systemd-tmpfiles systemd-modules-load systemd-sysctl dracut-systemd base crypt dm rootfs-block udev-rules fs-lib"
BK_DRACUT_DRIVERS="dm-crypt xts ecb algif_skcipher virtio_blk virtio_pci ext4"

# bk_build_dracut OUT with|without|tpm2 [CA]: cached by the kernel, the module's files, the SEA, the CA.
bk_build_dracut() {
  local out=$1 with=$2 ca=${3:-}
  bk_depmod
  local mods=$BK_DRACUT_MODULES drivers=$BK_DRACUT_DRIVERS
  [ "$with" = with ] && { mods="$mods bootkey systemd-networkd network"; drivers="$drivers virtio_net"; }
  [ "$with" = tpm2 ] && mods="$mods tpm2-tss"     # systemd-cryptsetup's own TPM2 unlock (bench)
  local key; key=$(bk_key "$BK_KVER" "$mods" "$drivers" "$BK_ROOT/dracut/90bootkey/module-setup.sh" \
    "$BK_ROOT/systemd/bootkey-askpass.path" "$BK_ROOT/systemd/bootkey-askpass.service" \
    "$BK_ROOT/systemd/bootkey-askpass-network.conf" "$([ "$with" = with ] && bk_key "$BK_ROOT/dist/bootkey-linux-x64")" ${ca:+"$ca"} \
    "$(dpkg-query -W -f '${Version}' dracut-core systemd cryptsetup-bin)")
  if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then return 0; fi
  local base=/usr/lib/dracut
  [ "$with" = with ] && { bk_dracut_base; base=$BK_WORK/dracut-base; }
  local t; t=$(mktemp -d)
  bk_log "dracut ($with bootkey) -> $out"
  dracutbasedir=$base BOOTKEY_BIN=${BOOTKEY_BIN:-} BOOTKEY_CA=${ca:-/nonexistent} \
    BOOTKEY_NEEDNET=1 BOOTKEY_DEVICES=" " \
    dracut --quiet --force --no-hostonly --reproducible --kver "$BK_KVER" \
      --kmoddir "$BK_KDIR/lib/modules/$BK_KVER" -m "$mods" --add-drivers "$drivers" \
      --filesystems ext4 --compress zstd --tmpdir "$t" "$out.tmp" 2>"$t/err" ||
    { grep -v "Skipping udev rule" "$t/err" >&2; rm -rf "$t"; return 1; }
  rm -rf "$t"
  mv "$out.tmp" "$out" && echo "$key" >"$out.key"
}

# bk_rootfs DIR MARKER: a tiny root: busybox, /sbin/init, os-release, the SEA and cryptsetup.
bk_rootfs() {
  local d=$1 marker=$2
  rm -rf "$d" && mkdir -p "$d"/{bin,sbin,etc,proc,sys,dev,run,tmp,usr/lib,usr/libexec/bootkey,etc/bkt}
  cp /bin/busybox "$d/bin/busybox"
  local a; for a in $("$d/bin/busybox" --list); do [ -e "$d/bin/$a" ] || ln -s busybox "$d/bin/$a"; done
  printf 'NAME="bootkey test root"\nID=bootkey-test-root\n' >"$d/usr/lib/os-release"
  printf '%s\n' "$marker" >"$d/marker"
  install -m 0755 "$BK_ROOT/dist/bootkey-linux-x64" "$d/usr/libexec/bootkey/bootkey"
  install -m 0755 "$(command -v cryptsetup)" "$d/sbin/cryptsetup"
  local lib
  for lib in $(ldd "$BK_ROOT/dist/bootkey-linux-x64" "$(command -v cryptsetup)" | awk '/=>/{print $3} $1 ~ /^\// && $1 !~ /:$/{print $1}' | sort -u); do
    mkdir -p "$d$(dirname "$lib")"; cp -L "$lib" "$d$lib"
  done
  cat >"$d/sbin/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/libexec/bootkey
mount -t proc proc /proc 2>/dev/null; mount -t sysfs sys /sys 2>/dev/null; mount -t devtmpfs dev /dev 2>/dev/null
mount -t securityfs none /sys/kernel/security 2>/dev/null; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
echo "BOOTKEY-MARKER: $(cat /marker)"
for b in /sys/block/vd*; do
  case $(cat "$b/serial" 2>/dev/null) in bkctl) BK_CTL=/dev/${b##*/};; bkroot) BK_DISK=/dev/${b##*/};; esac
done
export BK_CTL BK_DISK
if [ -n "$BK_CTL" ]; then head -c 65536 "$BK_CTL" | tr -d '\000' >/run/ctl.sh; . /run/ctl.sh; fi
echo "BOOTKEY-POWEROFF"
sync; poweroff -f
INIT
  chmod 0755 "$d/sbin/init"
}

# bk_build_rootimg OUT PASSFILE DIR [SIZE_MIB]: ext4 holding DIR, then LUKS2 in place (offline
# reencrypt: no device-mapper needed), PBKDF2 1000 iterations. Prints the LUKS UUID.
bk_build_rootimg() {
  local out=$1 pass=$2 dir=$3 mib=${4:-256}
  rm -f "$out.tmp"
  truncate -s $(( (mib + 16) * 1048576 )) "$out.tmp"
  mkfs.ext4 -q -F -d "$dir" -E root_owner=0:0 -U 0b0071e5-0000-4000-8000-0000000000f5 -L bkroot "$out.tmp" "${mib}M"
  cryptsetup reencrypt --batch-mode --encrypt --type luks2 --reduce-device-size 16M \
    --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$pass" "$out.tmp" >/dev/null
  mv "$out.tmp" "$out"
  cryptsetup luksUUID "$out"
}

# bk_free_port [COUNT]: a port P that the kernel just gave out (bind to port 0) with P..P+COUNT-1
# all free at this moment. Fixed ports collide with other runs on a shared host.
bk_free_port() {
  node -e '
    const net = require("net");
    const n = Number(process.argv[1] || 1);
    const free = (p) => new Promise((r) => { const s = net.createServer(); s.once("error", () => r(false)); s.listen(p, "127.0.0.1", () => s.close(() => r(true))); });
    (async () => {
      for (let tries = 0; tries < 50; tries++) {
        const a = net.createServer(); await new Promise((r) => a.listen(0, "127.0.0.1", r));
        const p = a.address().port; await new Promise((r) => a.close(r));
        if (p + n - 1 > 65535) continue;
        let ok = true; for (let i = 0; i < n && ok; i++) ok = await free(p + i);
        if (ok) { console.log(p); return; }
      }
      console.error("bk_free_port: no free port range found"); process.exit(1);
    })();' "${1:-1}"
}

# bk_server_start DIR PORT: state in DIR (created once), log DIR/server.log, pid DIR/server.pid.
# Success only when THIS process logs event=listening on PORT; if it exits first (e.g. the port is
# taken: "cannot listen on 127.0.0.1:PORT: EADDRINUSE"), its log lines are shown and it fails.
bk_server_start() {
  local dir=$1 port=$2
  [ -f "$dir/ca.pem" ] || node "$BK_ROOT/dist/bootkey.js" server init --state "$dir" >/dev/null
  touch "$dir/server.log"
  local from; from=$(( $(wc -l <"$dir/server.log") + 1 ))
  node "$BK_ROOT/dist/bootkey.js" server --state "$dir" --listen "127.0.0.1:$port" >>"$dir/server.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/server.pid"
  local i; for i in $(seq 150); do
    if tail -n "+$from" "$dir/server.log" | grep -Eq "event=listening .*port=$port( |\$)"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      bk_log "FATAL: bootkey server (pid $pid) exited instead of listening on 127.0.0.1:$port:"
      tail -n "+$from" "$dir/server.log" | tail -5 >&2
      rm -f "$dir/server.pid"
      return 1
    fi
    sleep 0.1
  done
  bk_log "FATAL: bootkey server (pid $pid) did not report listening on 127.0.0.1:$port within 15 s:"
  tail -n "+$from" "$dir/server.log" | tail -5 >&2
  kill "$pid" 2>/dev/null || true; rm -f "$dir/server.pid"
  return 1
}

# bk_enrol_token DIR PORT COMMENT: prints a new one-use, one-hour enrolment token.
bk_enrol_token() {
  node "$BK_ROOT/dist/bootkey.js" admin --server "https://127.0.0.1:$2" --ca "$1/ca.pem" --admin-token "$1/admin.token" \
    token create --uses 1 --expires 1h --comment "$3" --json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).token)'
}

bk_server_stop() {
  local pid; pid=$(cat "$1/server.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$1/server.pid"
}

# bk_console SOCK LOG [REGEX=REPLY ...]: background console driver (sets BK_CONSOLE_PID).
bk_console() {
  python3 "$BK_ROOT/qemu-tests/console.py" "$@" &
  BK_CONSOLE_PID=$!
}
