#!/usr/bin/env bash
# The initrd executable's candidates, measured (issue 14 §3): for each, its size (raw and
# zstd -15, as dracut compresses) and its start-up under TCG: a busybox initramfs holding only
# that executable and its libraries, booted with -kernel (no firmware), runs
# `EXE initrd-agent --dir /empty` (process start → the agent's code ran and found no question,
# i.e. everything before the first TPM command except the token read) BK_SEA_RUNS times (default 5)
# and prints the times; the host runs it the same way for a quick comparison.
#   full      Node's full ICU (the executable before issue 14)
#   en        English-only ICU (scripts/build-sea.mjs default)
#   en-min    en + a minified bundle
#   en-cache  en + the SEA's V8 code cache (useCodeCache)
#   none      ICU data zeroed (size only: Intl.DateTimeFormat aborts the process)
#   deb18     Debian 12's own node (18, libnode108 + system ICU 72) + the bundle, no SEA
# Results: qemu-tests/work/boot/sea-bench.txt, JSON last line. Leaves dist/ as the default build.
# BK_SEA_NOBUILD=1 reuses the candidates built last time; BK_SEA_TIMEOUT (default 900 s) per boot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
W=$BK_WORK/boot/sea
RUNS=${BK_SEA_RUNS:-5}
mkdir -p "$W"
cd "$BK_ROOT"
build() { # NAME ENV...
  local n=$1; shift
  env "$@" node scripts/build-sea.mjs 2>&1 | grep '^build-sea' >&2
  mkdir -p "$W/$n"; cp dist/bootkey-linux-x64 "$W/$n/bootkey"
}
if [ "${BK_SEA_NOBUILD:-}" != 1 ] || [ ! -x "$W/en/bootkey" ]; then   # BK_SEA_NOBUILD=1: reuse the last builds
  node scripts/build.mjs
  build full BOOTKEY_SEA_ICU=full
  build none BOOTKEY_SEA_ICU=none
  build en-min BOOTKEY_SEA_MINIFY=1
  build en-cache BOOTKEY_SEA_CODE_CACHE=1
  build en
  cp dist/sea/bootkey.cjs "$W/bundle.cjs"
fi
# Debian's node: unpacked, never installed (it would replace the Node 20 the build needs)
if [ ! -x "$W/deb18/root/usr/bin/node" ]; then
  rm -rf "$W/deb18" && mkdir -p "$W/deb18/debs"
  (cd "$W/deb18/debs" && apt-get -q -o APT::Sandbox::User=root download \
     "nodejs=$(apt-cache madison nodejs | awk '$3 ~ /deb12/ {print $3; exit}')" libnode108 libicu72 libuv1 libc-ares2 libnghttp2-14 libbrotli1 node-acorn node-cjs-module-lexer node-undici >/dev/null)
  for d in "$W"/deb18/debs/*.deb; do dpkg -x "$d" "$W/deb18/root"; done
fi
D18=$W/deb18/root
bk_fetch_kernel
host_times() { # CMD... : RUNS start-ups on the host, ms
  local i t0; for i in $(seq "$RUNS"); do
    t0=$(date +%s%N); "$@" >/dev/null 2>&1 || true; echo $(( ($(date +%s%N) - t0) / 1000000 ))
  done | tr '\n' ' '
}
guest_times() { # NAME EXE-IN-GUEST SRC:DEST... : RUNS start-ups in a TCG guest, ms
  local n=$1 exe=$2; shift 2
  cat >"$W/init-$n" <<EOF
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /empty /tmp
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu
for i in \$(seq $RUNS); do
  read a _ </proc/uptime; $exe initrd-agent --dir /empty >/dev/null 2>&1; read b _ </proc/uptime
  echo "SEA-START \$(( (\${b%.*}\${b#*.} - \${a%.*}\${a#*.}) * 10 ))"
done
poweroff -f
EOF
  local libs=() l s
  for l in $(for s in "$@"; do LD_LIBRARY_PATH=$D18/usr/lib/x86_64-linux-gnu ldd "${s%%:*}" 2>/dev/null || true; done |
             awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\/lib64/ {print $1}' | grep -v "^$W/" | sort -u); do
    libs+=("$l:${l#/}")
  done
  # (zstd -3, not lib.sh's -19: the initramfs's compression is not what is measured here)
  local d; d=$(mktemp -d)
  mkdir -p "$d"/{bin,dev,proc,sys,run,tmp}
  cp /bin/busybox "$d/bin/busybox"
  for l in $("$d/bin/busybox" --list); do [ -e "$d/bin/$l" ] || ln -s busybox "$d/bin/$l"; done
  install -m 0755 "$W/init-$n" "$d/init"
  for s in "$@" "${libs[@]}"; do mkdir -p "$d/$(dirname "${s#*:}")"; cp -aL "${s%%:*}" "$d/${s#*:}"; done
  (cd "$d" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | zstd -q -3 -T0 -f -o "$W/initrd-$n.zst"
  rm -rf "$d"
  timeout "${BK_SEA_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -display none -no-reboot -nic none \
    -kernel "$BK_VMLINUZ" -initrd "$W/initrd-$n.zst" -append "console=ttyS0 quiet panic=-1" \
    -serial file:"$W/console-$n.txt" >/dev/null 2>&1 || true
  tr -d '\r' <"$W/console-$n.txt" | sed -n 's/^SEA-START \([0-9]*\)$/\1/p' | tr '\n' ' '
}
median() { tr ' ' '\n' | sort -n | awk 'NF {v[++n]=$1} END {if (n) print (n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2); else print "null"}'; }
zsz() { cat "$@" | zstd -15 -q -T0 -c | wc -c; }
out=$W/../sea-bench.txt
json=
{
  echo "initrd executable candidates $(date -u +%FT%TZ), $RUNS start-ups each (EXE initrd-agent --dir /empty), load $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '| %-9s | %-11s | %-11s | %-30s | %-7s | %-30s | %-7s |\n' candidate "raw MB" "zstd MB" "TCG guest ms" median "host ms" median
  for n in full en en-min en-cache none deb18; do
    if [ "$n" = deb18 ]; then
      files=("$D18/usr/bin/node" "$D18"/usr/lib/x86_64-linux-gnu/libnode.so.108 "$D18"/usr/lib/x86_64-linux-gnu/lib{icudata,icuuc,icui18n}.so.72* "$D18"/usr/lib/x86_64-linux-gnu/libuv.so.1* "$D18"/usr/lib/x86_64-linux-gnu/libcares.so.2* "$D18"/usr/lib/x86_64-linux-gnu/libnghttp2.so.14* "$D18"/usr/lib/x86_64-linux-gnu/libbrotli*.so.1* "$W/bundle.cjs")
      # its externalised builtins (acorn, cjs-module-lexer, undici) live at /usr/share/nodejs: on the
      # host, that directory from the unpacked packages is bind-mounted in a private mount namespace
      files+=($(find "$D18/usr/share/nodejs" -name '*.js' -path '*/dist/*' -o -name 'lexer.js' -o -name 'undici-fetch.js'))
      raw=$(cat "${files[@]}" | wc -c); z=$(zsz "${files[@]}")
      h=$(host_times unshare -m sh -c "mount --bind $D18/usr/share/nodejs /usr/share/nodejs && LD_LIBRARY_PATH=$D18/usr/lib/x86_64-linux-gnu exec $D18/usr/bin/node $W/bundle.cjs initrd-agent --dir /nonexistent")
      specs=("$D18/usr/bin/node:usr/bin/node" "$W/bundle.cjs:usr/lib/bootkey.cjs")
      for f in "$D18"/usr/lib/x86_64-linux-gnu/*.so*; do specs+=("$f:usr/lib/x86_64-linux-gnu/${f##*/}"); done
      specs+=("$D18/usr/share/nodejs:usr/share/nodejs")
      g=$(guest_times "$n" "/usr/bin/node /usr/lib/bootkey.cjs" "${specs[@]}")
    else
      raw=$(wc -c <"$W/$n/bootkey"); z=$(zsz "$W/$n/bootkey")
      h=$(host_times "$W/$n/bootkey" initrd-agent --dir /nonexistent)
      g=$([ "$n" = none ] && echo "" || guest_times "$n" /usr/libexec/bootkey "$W/$n/bootkey:usr/libexec/bootkey")
    fi
    gm=$(echo "$g" | median); hm=$(echo "$h" | median)
    printf '| %-9s | %-11s | %-11s | %-30s | %-7s | %-30s | %-7s |\n' "$n" "$(awk -v b="$raw" 'BEGIN{printf "%.1f", b/1e6}')" "$(awk -v b="$z" 'BEGIN{printf "%.1f", b/1e6}')" "$g" "$gm" "$h" "$hm"
    json="$json${json:+,}\"$n\":{\"raw\":$raw,\"zstd\":$z,\"tcg_ms\":$gm,\"host_ms\":$hm}"
  done
  echo "{\"bench\":\"initrd-executable\",\"runs\":$RUNS,$json}"
} | tee "$out"
