#!/bin/bash
# bootkey: attested remote unlock of LUKS2 volumes in a systemd initrd (docs/INITRD.md).
# The agent answers systemd-cryptsetup's ask-password requests for volumes with a bootkey token.
#   BOOTKEY_BIN      the single executable (default /usr/libexec/bootkey/bootkey)
#   BOOTKEY_DEVICES  LUKS2 devices to read tokens from (default: every crypto_LUKS device, blkid)
#   BOOTKEY_NEEDNET  1/0: force rd.neednet=1 on/off (default: on when a token lists a remote server)
#   BOOTKEY_CA       server CA(s) to pin besides the tokens' (default /etc/bootkey/ca.pem, if present)

bootkey_bin() { echo "${BOOTKEY_BIN:-/usr/libexec/bootkey/bootkey}"; }

bootkey_devices() {
    local dev
    for dev in ${BOOTKEY_DEVICES:-$(blkid -t TYPE=crypto_LUKS -o device 2>/dev/null)}; do
        cryptsetup luksDump --dump-json-metadata "$dev" 2>/dev/null | grep -Eq '"type" *: *"bootkey"' && echo "$dev"
    done
}

# called by dracut
check() {
    require_binaries cryptsetup "$(bootkey_bin)" "$systemdutildir"/systemd-reply-password || return 1
    [[ $hostonly ]] && [[ -n $(bootkey_devices) ]] && return 0
    return 255
}

# called by dracut
depends() {
    echo crypt systemd network
}

# called by dracut
installkernel() {
    hostonly='' instmods -o tpm_tis tpm_tis_core tpm_crb tpm virtio_net virtio_pci
}

# called by dracut
install() {
    local unit info remote=no
    inst_binary "$(bootkey_bin)" /usr/libexec/bootkey/bootkey
    # dracut strips every executable at the end (strip -g -p): that destroys the Node single
    # executable's injected blob (it then segfaults). Distribution binaries come stripped anyway.
    if [[ $do_strip != no ]]; then
        dinfo "bootkey: not stripping the initramfs (strip corrupts the bootkey single executable)"
        do_strip=no
    fi
    inst_multiple cryptsetup "$systemdutildir"/systemd-reply-password
    for unit in bootkey-askpass.path bootkey-askpass.service; do
        inst_simple "$moddir/$unit" "$systemdsystemunitdir/$unit"
    done
    [[ -f /etc/bootkey/bootkey.conf ]] && inst_simple /etc/bootkey/bootkey.conf

    # pin the server CAs (configured + the tokens'); rd.neednet=1 only when a server is remote
    local ca=${BOOTKEY_CA:-/etc/bootkey/ca.pem} pins="$initdir/etc/bootkey/ca-tokens.pem"
    mkdir -p "$initdir/etc/bootkey"
    # shellcheck disable=SC2046
    info=$("$(bootkey_bin)" initrd-info --ca-out "$pins" $(bootkey_devices))
    [[ $info ]] && dinfo "bootkey: $info"
    cat "$ca" "$pins" 2>/dev/null >"$initdir/etc/bootkey/ca.pem"
    rm -f "$pins"
    [[ -s $initdir/etc/bootkey/ca.pem ]] || rm -f "$initdir/etc/bootkey/ca.pem"
    [[ $info == *remote=yes* ]] && remote=yes
    [[ ${BOOTKEY_NEEDNET:-} == 1 ]] && remote=yes
    [[ ${BOOTKEY_NEEDNET:-} == 0 ]] && remote=no
    if [[ $remote == yes ]]; then
        mkdir -p "$initdir/etc/cmdline.d"
        echo "rd.neednet=1" >"$initdir/etc/cmdline.d/90bootkey.conf"
        inst_simple "$moddir/bootkey-askpass-network.conf" \
            "$systemdsystemunitdir/bootkey-askpass.service.d/network.conf"
    fi
    $SYSTEMCTL -q --root "$initdir" add-wants sysinit.target bootkey-askpass.path
    # start the agent early too: its start-up then overlaps udev and DHCP (it waits for the question)
    $SYSTEMCTL -q --root "$initdir" add-wants sysinit.target bootkey-askpass.service
}
