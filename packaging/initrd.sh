#!/bin/sh
# bootkey-machine package scriptlet helper: regenerates the initrd(s) the distribution's way.
# Installed as /usr/libexec/bootkey/regenerate-initrd; called by the rpm/deb scriptlets
# (docs/PACKAGING.md "Initrd regeneration"). Does nothing unless the machine role is set up
# (/etc/dracut.conf.d/90-bootkey.conf, written by `bootkey setup machine`) or "--force" is given.
#   regenerate-initrd [--force] [--remove]   --remove: drop our dracut.conf.d file first
set -eu
conf=/etc/dracut.conf.d/90-bootkey.conf
force=no
for a in "$@"; do
    case $a in
        --force) force=yes ;;
        --remove)
            if [ -f "$conf" ] && grep -q '^# written by bootkey setup machine' "$conf"; then
                rm -f "$conf"; force=yes
            fi ;;
    esac
done
[ -f "$conf" ] || [ "$force" = yes ] || exit 0
if [ -x /usr/lib/module-init-tools/regenerate-initrd-posttrans ]; then
    # openSUSE (suse-module-tools): also right inside a transactional-update snapshot and with
    # sdbootutil (it calls sdbootutil when systemd-boot is installed by it)
    mkdir -p /run/regenerate-initrd && touch /run/regenerate-initrd/all
    /usr/lib/module-init-tools/regenerate-initrd-posttrans
elif command -v sdbootutil >/dev/null 2>&1 && sdbootutil is-installed >/dev/null 2>&1; then
    sdbootutil mkinitrd
elif command -v dracut >/dev/null 2>&1; then
    dracut --force --regenerate-all
else
    echo "bootkey: dracut not found: regenerate the initrd yourself" >&2
fi
