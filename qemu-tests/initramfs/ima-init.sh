#!/bin/sh
# /init of the IMA dump initramfs (busybox-static only). The kernel boots with
# ima_policy=tcb ima_template=ima-sig ima_hash=sha256; this init replaces the built-in policy by
# one that also measures the initramfs (rootfs) and selects every template by file owner, makes
# a few measurements (exec, reads, an open-writers violation), then writes base64 blocks
# "=== BEGIN name" ... "=== END name" to ttyS1 (the host's data.txt):
#   every /sys/kernel/security/ima/*_runtime_measurements* (binary and ASCII, per bank if present)
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
measure func=MODULE_CHECK template=ima-modsig
measure func=KEY_CHECK template=ima-buf
measure func=CRITICAL_DATA template=ima-buf
measure func=FILE_CHECK mask=MAY_READ uid=0
POL
# With modules to load, an appraise rule allows their appended signatures (the kernel reads a
# modsig only when appraisal allows one): the ima-modsig entry then carries d-modsig and modsig.
# (Boot with ima_appraise=log so that the unknown key does not stop the load.)
if ls /mods/*.ko >/dev/null 2>&1; then
  { cat /tmp/policy; echo 'appraise func=MODULE_CHECK appraise_type=imasig|modsig'; } >/tmp/policy.mods
  cat /tmp/policy.mods >$S/policy && cp /tmp/policy.mods /tmp/policy || { echo "bootkey-ima: appraise rule refused"; cat /tmp/policy >$S/policy || echo "bootkey-ima: POLICY WRITE FAILED"; }
else
  cat /tmp/policy >$S/policy || echo "bootkey-ima: POLICY WRITE FAILED"
fi
for f in ng sig modsig ima; do cat /data/$f >/dev/null; done
/bin/busybox true
sh -c 'true'
cat /init >/dev/null
# open_writers violation: read (measured) while the file is open for writing
exec 3>>/data/buf
cat /data/buf >/dev/null
exec 3>&-
echo changed >>/data/ng; cat /data/ng >/dev/null
# Kernel modules given in /mods (make-ima-lists.sh BK_IMA_MODULES): loaded, so measured as
# ima-modsig with their appended signature (Debian signs its modules).
for m in /mods/*.ko; do [ -e "$m" ] && insmod "$m" && echo "bootkey-ima: loaded $m"; done
# bkima.files=N on the command line: N more distinct files read as root (ima-sig/default template).
n=$(sed -n 's/.*bkima.files=\([0-9]*\).*/\1/p' /proc/cmdline)
i=0
mkdir -p /data/many
while [ "$i" -lt "${n:-0}" ]; do echo "file $i" >/data/many/f$i; cat /data/many/f$i >/dev/null; i=$((i + 1)); done
sleep 1
for f in $S/*_runtime_measurements*; do
  cat "$f" >/tmp/$(basename "$f")
done
# PCRs after the lists: nothing is measured between (the cat above reads securityfs).
for bank in sha1 sha256 sha384 sha512 sm3_256; do
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
