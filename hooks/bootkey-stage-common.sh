# shellcheck shell=sh
# Shared by the update hooks: reads /etc/bootkey/stage.conf and runs `bootkey stage`.
#   BOOTKEY_DEVICE   the LUKS2 device with the bootkey token (required; no guessing)
#   BOOTKEY          the bootkey binary (default: bootkey in PATH)
#   BOOTKEY_ARGS     extra arguments (e.g. --tpm device:/dev/tpmrm0 --deadline 30)
#   BOOTKEY_STRICT=1 fail the update when staging is refused (default: print the reason, exit 0,
#                    the next boot then asks for the passphrase, as without bootkey staging)
# Usage: bootkey_stage LABEL PART-ARGS...
BOOTKEY_CONF=${BOOTKEY_CONF:-/etc/bootkey/stage.conf}
# shellcheck disable=SC1090
[ -r "$BOOTKEY_CONF" ] && . "$BOOTKEY_CONF"

bootkey_stage() {
  label=$1; shift
  if [ -z "${BOOTKEY_DEVICE:-}" ]; then
    echo "bootkey: BOOTKEY_DEVICE is not set (in $BOOTKEY_CONF): not staging $label" >&2
    return 0
  fi
  # shellcheck disable=SC2086
  "${BOOTKEY:-bootkey}" stage --device "$BOOTKEY_DEVICE" --label "$label" "$@" ${BOOTKEY_ARGS:-}
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "bootkey: staging $label failed (exit $rc): the next boot will ask for the passphrase unless an operator stages it" >&2
    [ "${BOOTKEY_STRICT:-0}" = 1 ] && return "$rc"
  fi
  return 0
}
