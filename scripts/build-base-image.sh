#!/bin/sh
# Build a Debian bookworm base image without any Docker registry: debootstrap a minbase root file
# system from the Debian mirror apt uses on this machine and `docker import` it. Cached: does nothing
# when the image already exists.
#
# The result is made to behave like the public debian:bookworm-slim (which the Dockerfile uses by
# default), so the same Dockerfile builds the same way on both: deb822 sources for bookworm,
# bookworm-updates and bookworm-security, no docs/man pages/locales installed by dpkg, apt caches
# cleaned after every install, services never started by package scripts, CMD ["bash"].
#
# Environment:
#   BASE_IMAGE      image to create (default sm-r-magic-base:bookworm)
#   DEBIAN_MIRROR   mirror to debootstrap from (default: read from /etc/apt/sources.list{,.d/*})
#   SECURITY_MIRROR security mirror written into the image (default: read likewise)
#   DOCKER          docker client (default docker)
# Needs root (debootstrap) and a running daemon (scripts/ensure-docker.sh). ~40 s here.
set -eu

image=${BASE_IMAGE:-sm-r-magic-base:bookworm}
suite=bookworm
docker_cli=${DOCKER:-docker}

if "$docker_cli" image inspect "$image" >/dev/null 2>&1; then
    echo "build-base-image: $image exists, skipping"
    exit 0
fi

# The URI of the first enabled apt source whose suites include "$1" exactly (bookworm, not
# bookworm-updates), from one-line (*.list) and deb822 (*.sources) files.
apt_uri_for_suite() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$1" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s) { print $i; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$1" '
            function flush() {
                if (enabled && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && uri != "") {
                    print uri; found = 1
                }
                types = ""; suites = ""; uri = ""; enabled = 1
            }
            BEGIN { enabled = 1 }
            /^[ \t]*$/ { flush(); if (found) exit; next }
            /^#/ { next }
            {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "suites") suites = val
                else if (key == "uris") { split(val, u, /[ \t]+/); uri = u[1] }
                else if (key == "enabled" && tolower(val) == "no") enabled = 0
            }
            END { if (!found) flush() }' "$f"
    done
}

mirror=${DEBIAN_MIRROR:-$(apt_uri_for_suite "$suite" | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
security=${SECURITY_MIRROR:-$(apt_uri_for_suite "$suite-security" | head -n 1)}
security=${security:-http://deb.debian.org/debian-security}

command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
    { echo "build-base-image: debootstrap missing (scripts/ensure-docker.sh installs it)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 1; }

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/sm-r-magic-rootfs.XXXXXX")
rootfs=$work/rootfs
cleanup() {
    # debootstrap mounts proc/sys inside the target; never let rm cross into them.
    for m in proc sys dev/pts dev; do umount -l "$rootfs/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "build-base-image: debootstrap --variant=minbase $suite from $mirror"
if ! PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    echo "build-base-image: debootstrap failed" >&2
    exit 1
fi

# Make it behave like debian:bookworm-slim (debuerreotype's "slim" + docker tweaks).
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Keep images small: no documentation, man pages or translations (as in debian:*-slim).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
printf '#!/bin/sh\n# Package scripts must not start services inside an image build.\nexit 101\n' \
    >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
# Drop what the slim image does not ship and what was only needed during debootstrap.
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
rm -rf "$rootfs/usr/share/man"/* "$rootfs/usr/share/info"/* "$rootfs/var/cache/apt"/*.bin "$rootfs/var/cache/apt/archives"/*.deb \
    "$rootfs/var/lib/apt/lists"/* "$rootfs/var/log"/*.log "$rootfs/debootstrap"
: >"$rootfs/etc/machine-id" 2>/dev/null || true
echo "bookworm-sm-r-magic" >"$rootfs/etc/hostname"

echo "build-base-image: importing as $image"
tar --numeric-owner --xattrs -C "$rootfs" -c . |
    "$docker_cli" import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --message "debootstrap --variant=minbase $suite $mirror" \
        - "$image" >/dev/null
end=$(date +%s)
echo "build-base-image: built $image in $((end - start)) s ($("$docker_cli" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
