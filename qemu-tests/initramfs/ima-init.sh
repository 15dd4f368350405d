#!/bin/sh
# /init of the IMA dump initramfs (busybox-static only). The kernel boots with
# ima_policy=tcb ima_template=ima-sig ima_hash=sha256; this init replaces the built-in policy by
# one that also measures the initramfs (rootfs) and selects every template by file owner, makes
# a few measurements (exec, reads, an open-writers violation), then writes base64 blocks
# "=== BEGIN name" ... "=== END name" to ttyS1 (the host's data.txt):
#   bin        /sys/kernel/security/ima/binary_runtime_measurements (and _sha1/_sha256 if present)
#   ascii      /sys/kernel/security/ima/ascii_runtime_measurements (and _sha1/_sha256 if present)
#   pcrs       "bank index HEX" lines from /sys/class/tpm/tpm0/pcr-<bank>/<index>, read AFTER the lists
#   policy     the policy written
# then powers off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
S=/sys/kernel/security/ima
echo "bootkey-ima: kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
out=/dev/ttyS1
stty -F $out raw -echo 2>/dev/null
emit() { echo "=== BEGIN $1"; base64 "$2"; echo "=== END $1"; }

# Files owned by distinct uids select the template (rules are tried in order).
mkdir -p /data
for t in ng sig buf modsig ima; do echo "bootkey ima test file for template $t" >/data/$t; done
chown 1001 /data/ng; chown 1002 /data/sig; chown 1003 /data/modsig; chown 1004 /data/ima
cat >/tmp/policy <<POL
dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
dont_measure fsmagic=0x73636673
dont_measure fsmagic=0x1cd1
measure func=FILE_CHECK mask=MAY_READ fowner=1001 template=ima-ng
measure func=FILE_CHECK mask=MAY_READ fowner=1002 template=ima-sig
measure func=FILE_CHECK mask=MAY_READ fowner=1003 template=ima-modsig
measure func=FILE_CHECK mask=MAY_READ fowner=1004 template=ima
measure func=BPRM_CHECK mask=MAY_EXEC template=ima-sig
measure func=KEY_CHECK template=ima-buf
measure func=CRITICAL_DATA template=ima-buf
measure func=FILE_CHECK mask=MAY_READ uid=0
POL
cat /tmp/policy >$S/policy || echo "bootkey-ima: POLICY WRITE FAILED"
for f in ng sig modsig ima; do cat /data/$f >/dev/null; done
/bin/busybox true
sh -c 'true'
cat /init >/dev/null
# open_writers violation: read (measured) while the file is open for writing
exec 3>>/data/buf
cat /data/buf >/dev/null
exec 3>&-
echo changed >>/data/ng; cat /data/ng >/dev/null
sleep 1
for f in binary_runtime_measurements binary_runtime_measurements_sha1 binary_runtime_measurements_sha256 \
         ascii_runtime_measurements ascii_runtime_measurements_sha1 ascii_runtime_measurements_sha256; do
  [ -e $S/$f ] && cat $S/$f >/tmp/$f
done
# PCRs after the lists: nothing is measured between (the cat above reads securityfs).
for bank in sha1 sha256 sha384 sha512; do
  [ -d /sys/class/tpm/tpm0/pcr-$bank ] || continue
  n=0
  while [ $n -le 23 ]; do echo "$bank $n $(cat /sys/class/tpm/tpm0/pcr-$bank/$n)"; n=$((n + 1)); done
done >/tmp/pcrs
cat $S/runtime_measurements_count >/tmp/count 2>/dev/null
{
  for f in /tmp/*_runtime_measurements*; do emit "$(basename $f)" $f; done
  emit pcrs /tmp/pcrs
  emit count /tmp/count
  emit policy /tmp/policy
  echo "=== DONE"
} >$out
echo "bootkey-ima: $(cat /tmp/count) entries; powering off"
sync
poweroff -f
