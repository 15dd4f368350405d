# shellcheck shell=bash
# Shared set-up of the whole-boot tests and the boot benchmark (sourced after lib.sh):
# builds (cached) the SEA, the dracut initrd with the bootkey module, the UKIs and ESPs, the LUKS2
# root image, the server state, and defines bk_vm_boot. See docs/INITRD.md "Whole-boot tests".
BK_PASS=bootkey-test-passphrase
BK_PORT=${BK_PORT:-$(bk_free_port)}   # a free port per run (the enrolment writes it into the token)
W=$BK_WORK/boot
mkdir -p "$W"
BK_TIMEOUT=${BK_VM_TIMEOUT:-240}
BK_MEM=${BK_VM_MEM:-1024}
BK_SMP=${BK_SMP:-2}
BK_DEADLINE=${BK_DEADLINE:-25}

bk_env_build() {
  local c missing=()
  for c in dracut qemu-system-x86_64 swtpm swtpm_setup tpm2_eventlog cryptsetup mkfs.ext4 mkfs.vfat mcopy \
           sfdisk objcopy zstd python3 busybox; do command -v "$c" >/dev/null || missing+=("$c"); done
  [ -d /usr/lib/dracut/modules.d/01systemd-networkd ] || missing+=(dracut-network)
  if [ ${#missing[@]} -gt 0 ]; then
    bk_log "missing: ${missing[*]} (Debian 12: apt-get install dracut-core dracut-network qemu-system-x86 ovmf swtpm swtpm-tools tpm2-tools cryptsetup-bin e2fsprogs dosfstools mtools fdisk binutils zstd busybox-static systemd-boot-efi python3)"
    return 1
  fi
  [ "${BK_SKIP_NPM_BUILD:-}" = 1 ] || (cd "$BK_ROOT" && npm run -s build >/dev/null 2>"$W/build.err") ||
    { cat "$W/build.err" >&2; return 1; }
  bk_fetch_kernel
  mkdir -p "$W/server"
  [ -f "$W/server/ca.pem" ] || node "$BK_ROOT/dist/bootkey.js" server init --state "$W/server" >/dev/null
  bk_build_dracut "$W/initrd-bootkey.zst" with "$W/server/ca.pem"

  # root filesystem + LUKS2 image (cached by the SEA, lib.sh and the server's CA/token)
  printf '%s' "$BK_PASS" >"$W/passphrase"
  # (no admin token in the guest: enrolment gets a one-use enrolment token through the control disk)
  local key; key=$(bk_key "$BK_ROOT/dist/bootkey-linux-x64" "$(declare -f bk_rootfs bk_build_rootimg)" "$W/server/ca.pem")
  if [ "$(cat "$W/root-fresh.img.key" 2>/dev/null)" != "$key" ]; then
    bk_log "root image"
    bk_rootfs "$W/rootfs" "bootkey whole-boot test root"
    cp "$W/server/ca.pem" "$W/passphrase" "$W/rootfs/etc/bkt/"
    bk_build_rootimg "$W/root-fresh.img" "$W/passphrase" "$W/rootfs" 256 >"$W/root.uuid"
    echo "$key" >"$W/root-fresh.img.key"
  fi
  BK_UUID=$(cat "$W/root.uuid")
  BK_CMDLINE="console=ttyS0 rd.luks.uuid=$BK_UUID root=/dev/mapper/luks-$BK_UUID rootfstype=ext4 rw ip=dhcp rd.bootkey.deadline=$BK_DEADLINE panic=-1 rd.shell=0"
  bk_build_uki "$W/uki-good.efi" "$BK_VMLINUZ" "$W/initrd-bootkey.zst" "$BK_CMDLINE"
  bk_build_uki "$W/uki-cmdline2.efi" "$BK_VMLINUZ" "$W/initrd-bootkey.zst" "$BK_CMDLINE bootkey.test=cmdline2"
  [ "$(bk_key "$W/uki-good.efi")" = "$(cat "$W/esp-good.img.key" 2>/dev/null)" ] ||
    { bk_build_esp "$W/esp-good.img" "$W/uki-good.efi:EFI/BOOT/BOOTX64.EFI" && bk_key "$W/uki-good.efi" >"$W/esp-good.img.key"; }
  [ "$(bk_key "$W/uki-cmdline2.efi")" = "$(cat "$W/esp-cmdline2.img.key" 2>/dev/null)" ] ||
    { bk_build_esp "$W/esp-cmdline2.img" "$W/uki-cmdline2.efi:EFI/BOOT/BOOTX64.EFI" && bk_key "$W/uki-cmdline2.efi" >"$W/esp-cmdline2.img.key"; }
  bk_env_build_update
}

# Test 6 (staging an update from the booted guest, Secure Boot on): the good UKI sbsigned with
# OVMF's snakeoil key; an "update" UKI (same command line, another os-release: another
# Authenticode digest) signed with the snakeoil key and with another key; their ESPs; and the
# update disk (ext4, serial bkupd) carrying both UKIs and hooks/ for the guest.
bk_env_build_update() {
  local key; key=$(bk_key "$W/uki-good.efi" "$BK_ROOT/hooks/bootkey-stage-common.sh" "$BK_ROOT/hooks/kernel-install/90-bootkey.install" "$(declare -f bk_env_build_update)")
  [ "$(cat "$W/upd.img.key" 2>/dev/null)" = "$key" ] && return 0
  bk_log "update UKIs (signed), ESPs and the update disk"
  local d; d=$(mktemp -d)
  printf 'NAME="bootkey test"\nID=bootkey-test\nVERSION_ID=2\nPRETTY_NAME="bootkey staged update"\n' >"$d/os-release2"
  bk_build_uki "$d/uki-upd.efi" "$BK_VMLINUZ" "$W/initrd-bootkey.zst" "$BK_CMDLINE" "$d/os-release2"
  bk_sign "$W/uki-sb-good.efi" "$W/uki-good.efi"
  bk_sign "$W/uki-upd.signed.efi" "$d/uki-upd.efi"
  openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=bootkey other signer" -days 3650 -keyout "$d/other.key" -out "$d/other.pem" 2>/dev/null
  sbsign --key "$d/other.key" --cert "$d/other.pem" --output "$W/uki-upd.other.efi" "$d/uki-upd.efi" 2>/dev/null
  bk_build_esp "$W/esp-sb-good.img" "$W/uki-sb-good.efi:EFI/BOOT/BOOTX64.EFI"
  bk_build_esp "$W/esp-upd.img" "$W/uki-upd.signed.efi:EFI/BOOT/BOOTX64.EFI"
  bk_build_esp "$W/esp-upd-other.img" "$W/uki-upd.other.efi:EFI/BOOT/BOOTX64.EFI"
  mkdir -p "$d/upd/hooks/kernel-install"
  cp "$W/uki-upd.signed.efi" "$W/uki-upd.other.efi" "$d/upd/"
  cp "$BK_ROOT/hooks/bootkey-stage-common.sh" "$d/upd/hooks/"
  cp "$BK_ROOT/hooks/kernel-install/90-bootkey.install" "$d/upd/hooks/kernel-install/"
  local mib=$(( $(du -sm "$d/upd" | cut -f1) + 16 ))
  rm -f "$W/upd.img"; truncate -s "${mib}M" "$W/upd.img"
  mkfs.ext4 -q -F -d "$d/upd" -L bkupd "$W/upd.img"
  rm -rf "$d"
  echo "$key" >"$W/upd.img.key"
}

# Test 7 (runtime attestation): the good UKI's initrd with IMA on the command line (Debian's
# kernel: CONFIG_IMA=y; tcb: executables, libraries, root's files), its ESP.
BK_IMA_ARGS="ima_policy=tcb ima_template=ima-sig ima_hash=sha256"
bk_env_build_ima() {
  bk_build_uki "$W/uki-ima.efi" "$BK_VMLINUZ" "$W/initrd-bootkey.zst" "$BK_CMDLINE $BK_IMA_ARGS"
  [ "$(bk_key "$W/uki-ima.efi")" = "$(cat "$W/esp-ima.img.key" 2>/dev/null)" ] ||
    { bk_build_esp "$W/esp-ima.img" "$W/uki-ima.efi:EFI/BOOT/BOOTX64.EFI" && bk_key "$W/uki-ima.efi" >"$W/esp-ima.img.key"; }
}
# bk_ctl_runtime: the control script of test 7b (the booted guest, IMA on). Sends the IMA list as
# it stands (known-good) to the host (ttyS1, block ima-good), starts `bootkey agent` with the
# LUKS2 token's servers, waits for 3 successful attestations (the host sets the runtime policy
# meanwhile), runs a script no policy allows, waits for the agent to get the failed verdict, and
# prints the agent's output (BOOTKEY-AGENT: lines) and the times (guest clock).
bk_ctl_runtime() {
  printf '%s\n' "$BK_CTL_NET" \
    '# known-good: what the agent runs (bootkey, and cryptsetup luksDump for its token) runs once before the list is taken' \
    'bootkey --version >/dev/null 2>&1; cryptsetup luksDump "$BK_DISK" >/dev/null 2>&1' \
    'cp /sys/kernel/security/ima/ascii_runtime_measurements /tmp/ima-good.txt' \
    '{ echo "=== BEGIN ima-good"; gzip -c /tmp/ima-good.txt | base64; echo "=== END ima-good"; } >/dev/ttyS1' \
    "echo \"BOOTKEY-IMA-GOOD \$(wc -l </tmp/ima-good.txt) entries\"" \
    "bootkey agent --device \"\$BK_DISK\" --tpm device:/dev/tpmrm0 --interval $BK_RT_INTERVAL >/tmp/agent.log 2>&1 &" \
    'AGENT=$!' \
    'i=0; while [ "$(grep -c ": attesting (" /tmp/agent.log)" -lt 3 ] && [ $i -lt 240 ] && ! grep -q ": failed (" /tmp/agent.log; do sleep 1; i=$((i + 1)); done' \
    "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho BOOTKEY-EVIL-RAN\\n' >/usr/local/bin/bk-evil && chmod 0755 /usr/local/bin/bk-evil" \
    'echo "BOOTKEY-EVIL-AT $(date +%s)"; /usr/local/bin/bk-evil' \
    "i=0; while ! grep -q ': failed (' /tmp/agent.log && [ \$i -lt $((3 * BK_RT_INTERVAL + 30)) ]; do sleep 1; i=\$((i + 1)); done" \
    'grep -q ": failed (" /tmp/agent.log && echo "BOOTKEY-AGENT-FAILED-AT $(date +%s)"' \
    'kill $AGENT 2>/dev/null; sleep 1; sed "s/^/BOOTKEY-AGENT: /" /tmp/agent.log'
}

# A machine = a swtpm state dir that persists across its boots (like a real TPM's NV).
bk_vm_new() { rm -rf "$W/$1" && mkdir -p "$W/$1" && swtpm_setup --tpm2 --tpmstate "$W/$1" --pcr-banks sha1,sha256 --overwrite >/dev/null; }

# bk_vm_boot NAME VM ESP ROOTIMG ROOTMODE(rw|snapshot) CTLSCRIPT [REGEX=REPLY ...]
# BK_VM_SB=sb: Secure Boot on (snakeoil keys); BK_VM_UPD=IMG: an extra disk (serial bkupd).
# Boots with the VM's TPM, a virtio NIC on QEMU's user network (host = 10.0.2.2), the root disk
# (serial bkroot), a control disk (serial bkctl: a shell script the root's /sbin/init sources;
# disks are not measured, the command line is), the console on a socket driven by console.py.
# Console: $W/NAME/console.log; boot time: BK_BOOT_SECONDS.
bk_vm_boot() {
  local name=$1 vm=$2 esp=$3 root=$4 mode=$5 ctl=$6; shift 6
  local d=$W/$name; rm -rf "$d"; mkdir -p "$d"
  printf '%s\n' "$ctl" >"$d/ctl.img"; truncate -s 1M "$d/ctl.img"
  local snap=; [ "$mode" = snapshot ] && snap=,snapshot=on
  bk_console "$d/console.sock" "$d/console.log" "$@"
  local rc=0
  local upd=()
  [ -n "${BK_VM_UPD:-}" ] && upd=(-drive if=none,id=upd,format=raw,file="$BK_VM_UPD",snapshot=on -device virtio-blk-pci,drive=upd,serial=bkupd)
  BK_TPM_STATE_FROM=$W/$vm BK_CONSOLE=chardev:ser0 bk_boot "$d" "$esp" "${BK_VM_SB:-nosb}" "${upd[@]}" \
    -chardev socket,id=ser0,path="$d/console.sock",server=on,wait=on \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile= \
    -drive if=none,id=root,format=raw,file="$root$snap" -device virtio-blk-pci,drive=root,serial=bkroot \
    -drive if=none,id=ctl,format=raw,file="$d/ctl.img",snapshot=on -device virtio-blk-pci,drive=ctl,serial=bkctl || rc=$?
  wait "$BK_CONSOLE_PID" 2>/dev/null || true
  cp -a "$d/tpm/." "$W/$vm/"   # the TPM's NV (counters) lives on, as in a real machine
  tr -d '\r' <"$d/console.log" >"$d/console.txt" 2>/dev/null || true
  return $rc
}

# Control scripts for the root's /sbin/init (see bk_rootfs). The network: the initrd's DHCP
# lease may be gone after switch-root, so set QEMU's user-net address statically.
BK_CTL_NET='for n in /sys/class/net/*; do [ "${n##*/}" = lo ] || IF=${n##*/}; done; ip link set "$IF" up; ip addr add 10.0.2.15/24 dev "$IF" 2>/dev/null'
# bk_ctl_enroll TOKEN: the control script that enrols the booted guest with a one-use enrolment
# token (made on the host by bk_enrol_token; the admin token never enters the guest).
bk_ctl_enroll() {
  printf '%s\n' "$BK_CTL_NET" \
    "printf '%s' '$1' >/tmp/enrol.token" \
    "bootkey enroll --server https://10.0.2.2:$BK_PORT --ca /etc/bkt/ca.pem --enrol-token /tmp/enrol.token --device \"\$BK_DISK\" --key-file /etc/bkt/passphrase --machine-id bootkey-qemu-vm1 --tpm device:/dev/tpmrm0" \
    'echo "BOOTKEY-ENROLL-RC=$?"'
}
BK_CTL_AGAIN="$BK_CTL_NET
bootkey unlock --test --device \"\$BK_DISK\" --tpm device:/dev/tpmrm0 --deadline 20
echo \"BOOTKEY-AGAIN-RC=\$?\""
BK_PROMPT='Please enter passphrase for disk'
# bk_ctl_stage UKI...: mounts the update disk and runs the kernel-install hook for each UKI on it
# (KERNEL_INSTALL_LAYOUT=uki), as kernel-install would after installing it.
bk_ctl_stage() {
  printf '%s\n' 'for b in /sys/block/vd*; do [ "$(cat "$b/serial" 2>/dev/null)" = bkupd ] && BK_UPD=/dev/${b##*/}; done' \
    'mkdir -p /mnt/upd && mount -t ext4 -o ro "$BK_UPD" /mnt/upd'
  local u; for u in "$@"; do
    printf '%s\n' "echo BOOTKEY-STAGE-BEGIN $u" \
      "BOOTKEY_CONF=/nonexistent BOOTKEY_HOOKS=/mnt/upd/hooks BOOTKEY_DEVICE=\"\$BK_DISK\" BOOTKEY_ARGS='--tpm device:/dev/tpmrm0 --deadline 60' BOOTKEY_STRICT=1 KERNEL_INSTALL_LAYOUT=uki sh /mnt/upd/hooks/kernel-install/90-bootkey.install add 6.1.0-bootkey-update /boot/efi/entry /mnt/upd/$u" \
      "echo \"BOOTKEY-STAGE-RC=\$? $u\""
  done
}
