# Shared by the Atomic Host test scripts; sourced, not run.
set -euo pipefail

# Exit code for "skipped" (automake's convention); the last line printed says why.
SKIP=77

require_env() {
    local var
    for var in "$@"; do
        if [[ -z "${!var:-}" ]]; then
            echo "test: $var is not set" >&2
            exit 2
        fi
    done
}

# Prints the path of a raw copy of FORTNIGHT_IMAGE in FORTNIGHT_SCRATCH, converting or
# decompressing as its format needs.
to_raw() {
    require_env FORTNIGHT_IMAGE FORTNIGHT_FORMAT FORTNIGHT_SCRATCH
    local raw="$FORTNIGHT_SCRATCH/disk.raw"
    case "$FORTNIGHT_FORMAT" in
        qcow2) qemu-img convert -f qcow2 -O raw "$FORTNIGHT_IMAGE" "$raw" ;;
        raw.xz) xz --decompress --stdout -- "$FORTNIGHT_IMAGE" > "$raw" ;;
        # A copy, so that nothing a test does (a boot writes to its disk) touches the store.
        raw) cp --reflink=auto --sparse=always -- "$FORTNIGHT_IMAGE" "$raw" ;;
        *)
            echo "cannot read format $FORTNIGHT_FORMAT as a raw disk" >&2
            exit "$SKIP"
            ;;
    esac
    printf '%s\n' "$raw"
}

# Prints the names in directory $2 of the ext4 image $1, one a line, without . and ..
image_ls() {
    debugfs -R "ls $2" "$1" 2>/dev/null | tr -s ' ' '\n' | grep -v '^\.\{1,2\}$' | grep -v '^$'
}

# The deployment directory of FORTNIGHT_COMMIT inside a raw image, as the recipe lays it out:
# /ostree/deploy/<osname>/deploy/<commit>.0
deployment_of() {
    local raw="$1" osname
    for osname in $(image_ls "$raw" /ostree/deploy); do
        if debugfs -R "stat /ostree/deploy/$osname/deploy/$FORTNIGHT_COMMIT.0" "$raw" 2>/dev/null | grep -q '^Inode:'; then
            printf '%s\n' "/ostree/deploy/$osname/deploy/$FORTNIGHT_COMMIT.0"
            return 0
        fi
    done
    return 1
}

# Prints a reason and exits as skipped.
skip() {
    echo "skipped: $*"
    exit "$SKIP"
}

# Prints a reason and exits as failed.
fail() {
    echo "FAIL: $*"
    exit 1
}
