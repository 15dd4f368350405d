#!/bin/sh
# Installs the dracut module, its units and the single executable.
#   dracut/install.sh [BIN]       BIN default dist/bootkey-linux-x64
# Environment: DESTDIR (staging root), DRACUTMODDIR (default /usr/lib/dracut/modules.d),
# LIBEXECDIR (default /usr/libexec).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../dist/bootkey-linux-x64}
mod=${DESTDIR:-}${DRACUTMODDIR:-/usr/lib/dracut/modules.d}/90bootkey
libexec=${DESTDIR:-}${LIBEXECDIR:-/usr/libexec}/bootkey
install -d "$mod" "$libexec"
install -m 0755 "$here/90bootkey/module-setup.sh" "$mod/module-setup.sh"
for f in bootkey-askpass.path bootkey-askpass.service bootkey-askpass-network.conf; do
    install -m 0644 "$here/../systemd/$f" "$mod/$f"
done
install -m 0755 "$bin" "$libexec/bootkey"
echo "installed $mod and $libexec/bootkey"
