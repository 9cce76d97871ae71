#!/bin/sh
# Install feedsvc as a systemd service, the layout README.md "Running under systemd" describes:
#
#   /opt/feedsvc/venv                 a venv made from the system Python (/usr/bin/python3)
#   /etc/feedsvc/config.toml          from systemd/config.toml.example, never overwritten
#   /srv/feedsvc/seeds, media         readable by the service's dynamic user
#   /etc/systemd/system/feedsvc.{service,socket}
#
# Run as root from a clone of the repository. Safe to run again: it upgrades feedsvc in the
# venv, replaces the units, keeps the config and the seeds.
#
#   systemd/install.sh [--root DIR] [--python PATH] [--sample-seeds] [--enable]
#
#   --root DIR       install under DIR as if it were / (an image being built, a test)
#   --python PATH    the interpreter the venv is made from (default /usr/bin/python3). Not one
#                    under /home or /root: the unit's ProtectHome= hides them from the service,
#                    and a venv only links to its interpreter and reads its standard library
#                    there, so the service would fail to start (status=203/EXEC).
#   --sample-seeds   copy the repository's seeds/ into an empty seeds folder
#   --enable         then `systemctl daemon-reload` and `systemctl enable --now` the socket
#                    and the service (only with the real root and a running systemd)
set -eu

root=
python=/usr/bin/python3
sample_seeds=no
enable=no
while [ $# -gt 0 ]; do
    case $1 in
        --root) root=${2%/}; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --sample-seeds) sample_seeds=yes; shift ;;
        --enable) enable=yes; shift ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

source_dir=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/opt/feedsvc/venv
say() { echo "install.sh: $*"; }
fail() { echo "install.sh: $*" >&2; exit 1; }

# Everything made here must be readable by the service's user, which is in none of our groups.
umask 022

# 1. The interpreter: the system's, 3.11 or later, with venv.
real_python=$(readlink -m "$python")
case $real_python in
    /home/*|/root/*|/run/user/*)
        fail "$python is $real_python, under a folder the service cannot see (ProtectHome=yes); use the system Python, /usr/bin/python3" ;;
esac
[ -x "$python" ] || fail "$python not found: apt-get install python3 python3-venv (or --python PATH)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "$python is older than 3.11"
"$python" -c 'import ensurepip, venv' 2>/dev/null \
    || fail "$python cannot make a venv: apt-get install python3-venv"
# The unit's ExecReload= runs /bin/kill, which is procps's: a minimal Debian (debootstrap's
# minbase, container images) has none, and `systemctl reload feedsvc` would fail (203/EXEC).
if [ -z "$root" ] && [ ! -x /bin/kill ]; then
    fail "/bin/kill not found (the unit's ExecReload= runs it): apt-get install procps"
fi

# 2. The venv, made once; feedsvc installed or upgraded in it (uvloop comes with it).
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
    say "making $venv from $real_python"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv --clear "$venv"
fi
say "installing feedsvc from $source_dir into $venv"
"$venv/bin/python" -m pip install --quiet --upgrade "$source_dir"
install -D -m 0644 "$source_dir/README.md" "$root/opt/feedsvc/README.md"

# 3. Config, seeds and media: created if missing, never overwritten; readable by everyone.
install -d -m 0755 "$root/etc/feedsvc" "$root/srv/feedsvc/seeds" "$root/srv/feedsvc/media"
if [ -e "$root/etc/feedsvc/config.toml" ]; then
    say "keeping $root/etc/feedsvc/config.toml"
else
    install -m 0644 "$source_dir/systemd/config.toml.example" "$root/etc/feedsvc/config.toml"
    say "wrote $root/etc/feedsvc/config.toml: set [feed] title and base_url before the first start"
fi
chmod a+r "$root/etc/feedsvc/config.toml"
if [ "$sample_seeds" = yes ] && [ -z "$(ls -A "$root/srv/feedsvc/seeds")" ]; then
    install -m 0644 "$source_dir"/seeds/* "$root/srv/feedsvc/seeds/"
fi
# Folders traversable and files readable by all; nothing made writable.
chmod -R a+rX "$root/srv/feedsvc/seeds" "$root/srv/feedsvc/media"

# 4. The units.
install -d -m 0755 "$root/etc/systemd/system"
install -m 0644 "$source_dir/systemd/feedsvc.service" "$source_dir/systemd/feedsvc.socket" \
    "$root/etc/systemd/system/"
say "installed feedsvc.service and feedsvc.socket in $root/etc/systemd/system"

if [ "$enable" = yes ]; then
    [ -z "$root" ] && [ -d /run/systemd/system ] \
        || fail "--enable needs the real root and a running systemd"
    systemctl daemon-reload
    systemctl enable --now feedsvc.socket feedsvc.service
    systemctl --no-pager status feedsvc.service
else
    say "next: systemctl daemon-reload && systemctl enable --now feedsvc.socket feedsvc.service"
fi
