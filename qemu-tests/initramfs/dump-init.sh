#!/bin/sh
# /init of the event-log dump initramfs (busybox-static only; TPM TIS/CRB drivers and the
# 8250 UART are built into the Debian kernel, so no modules are loaded).
# Writes base64 blocks "=== BEGIN name" ... "=== END name" to ttyS1 (the host's data.txt):
#   eventlog  /sys/kernel/security/tpm0/binary_bios_measurements (raw TCG2 firmware log)
#   pcrs      "bank index HEX" lines from /sys/class/tpm/tpm0/pcr-<bank>/<index>
#   ima       /sys/kernel/security/ima/ascii_runtime_measurements (IMA extends PCR 10)
#   cmdline   /proc/cmdline
# then powers off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
echo "bootkey-dump: kernel $(uname -r), cmdline: $(cat /proc/cmdline)"

out=/dev/ttyS1
stty -F $out raw -echo 2>/dev/null
emit() { echo "=== BEGIN $1"; base64 "$2"; echo "=== END $1"; }

i=0
while [ ! -e /sys/kernel/security/tpm0/binary_bios_measurements ] && [ $i -lt 50 ]; do
  sleep 0.2; i=$((i + 1))
done
[ -e /sys/kernel/security/tpm0/binary_bios_measurements ] || echo "bootkey-dump: NO TPM EVENT LOG"

for bank in sha1 sha256 sha384 sha512; do
  [ -d /sys/class/tpm/tpm0/pcr-$bank ] || continue
  n=0
  while [ $n -le 23 ]; do echo "$bank $n $(cat /sys/class/tpm/tpm0/pcr-$bank/$n)"; n=$((n + 1)); done
done >/tmp/pcrs

cat /sys/kernel/security/tpm0/binary_bios_measurements >/tmp/eventlog
cat /sys/kernel/security/ima/ascii_runtime_measurements >/tmp/ima 2>/dev/null
cat /proc/cmdline >/tmp/cmdline
{
  emit eventlog /tmp/eventlog
  emit pcrs /tmp/pcrs
  emit ima /tmp/ima
  emit cmdline /tmp/cmdline
  echo "=== DONE"
} >$out
echo "bootkey-dump: log $(wc -c </tmp/eventlog) bytes, $(wc -l </tmp/pcrs) PCR values; powering off"
sync
poweroff -f
