#!/usr/bin/env bash
# Installs real CPython interpreters 3.9 … 3.15 into a cache folder and writes
# one wrapper per version, DIR/bin/python3.9 … DIR/bin/python3.15, for the
# tests that check generated code objects against every supported CPython.
#
#   scripts/fetch-pythons.sh [DIR]
#
# DIR: the first argument, else $KEYFILTER_PYTHONS, else <repo>/.cache/pythons.
# Needs: x86_64 Linux (made for Debian 12), Node.js + npm, and network access to
# deb.debian.org and the npm registry. curl, xz-utils and gpgv are installed
# with apt-get when missing (needs root then).
#
# Where each interpreter comes from, and why (only package registries can be
# reached, so no python.org builds):
#   3.9         Debian bullseye .debs (python3.9-minimal, libpython3.9-minimal,
#               libpython3.9-stdlib; plus libffi7, libssl1.1, libmpdec3 so ctypes,
#               ssl and _decimal load). Unpacked into a private root with
#               dpkg-deb -x; runs on the host's glibc through the host's loader.
#   3.10, 3.12  Pyodide 0.22.1 and 0.27.7 from npm: CPython compiled to
#               WebAssembly, run with node by DIR/pyodide-run.js. No other
#               registry ships these two versions for Debian 12.
#   3.11        The host's python3.11 (Debian 12's own). If there is none:
#               Debian bookworm .debs, unpacked like 3.13.
#   3.13-3.15   Debian sid .debs (python3.X-minimal, libpython3.X-minimal,
#               libpython3.X-stdlib) plus sid's runtime libraries, glibc
#               included. They need a newer glibc than the host's, so they run
#               through sid's own dynamic loader (ld-linux-x86-64.so.2
#               --library-path ROOT_LIBS); nothing is installed system-wide.
#               If sid drops a version, experimental and trixie are tried.
# Debian indexes are checked with gpgv against the host's Debian archive
# keyring, and every .deb against the SHA256 in the signed index.
#
# Wrapper semantics (all versions): `python3.X -c CODE [args]`, `python3.X FILE
# [args]`, `python3.X -m MOD [args]`, `python3.X - < FILE`; exit status is the
# script's (SystemExit code, 1 for an uncaught exception with its traceback on
# stderr). The native ones run CPython itself (every option works; a crash is a
# signal, e.g. status 139). The Pyodide ones (3.10, 3.12) accept only those
# forms (options -u -B -E -s -S -I -q -O -X -W are ignored), see the host's
# current directory and the script's directory (mounted at the same paths;
# nothing else of the host), cannot start subprocesses, ignore PYTHON*
# variables, and exit with 70 when the WebAssembly runtime itself fails (the
# equivalent of a native crash). Every wrapper unsets PYTHONHOME.
#
# Idempotent: a version whose wrapper already passes the self-check is left
# alone, so a second run takes a few seconds. Ends with a self-check of every
# wrapper (version, importlib MAGIC_NUMBER, a compiled lambda, exit status) and
# fails, naming the version, if any interpreter is missing or wrong.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-${KEYFILTER_PYTHONS:-$repo/.cache/pythons}}"
mkdir -p "$DIR/bin"
DIR="$(cd "$DIR" && pwd)"

MIRROR="http://deb.debian.org/debian"   # plain http: integrity comes from gpgv + SHA256
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
VERSIONS=(3.9 3.10 3.11 3.12 3.13 3.14 3.15)
declare -A MAGIC=([3.9]=610d0d0a [3.10]=6f0d0d0a [3.11]=a70d0d0a [3.12]=cb0d0d0a
                  [3.13]=f30d0d0a [3.14]=2b0e0d0a [3.15]=520e0d0a)
declare -A PYODIDE=([3.10]=0.22.1 [3.12]=0.27.7)
# Debian suites to look in, in order, per version (3.11 only when the host has none).
declare -A SUITES=([3.9]="bullseye" [3.11]="bookworm"
                   [3.13]="sid experimental trixie" [3.14]="sid experimental"
                   [3.15]="sid experimental")
# Extra packages unpacked next to the interpreter ("a|b": first one the suite has).
# With libc6 the interpreter runs through that libc's own loader; without it,
# through the host's.
BULLSEYE_EXTRA="libffi7 libssl1.1 libmpdec3"
RUNTIME_LIBS="libc6 zlib1g libexpat1 libgcc-s1 libzstd1 libssl3t64|libssl3 libffi8 liblzma5 libbz2-1.0"

start=$SECONDS
log() { printf 'fetch-pythons: %s\n' "$*" >&2; }
die() { printf 'fetch-pythons: ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 Linux is supported (this is $(uname -m))"

# One run at a time per DIR.
exec 9>"$DIR/.lock"
flock 9

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
DL="$DIR/.download"   # Debian indexes and .debs; removed after a successful run

# --------------------------------------------------------------------------
# Self-check: one run of a script file per wrapper.
cat >"$WORK/selfcheck.py" <<'EOF'
import sys, importlib.util, marshal, dis, types, traceback, json, base64
co = compile('lambda a: a == b"x"', '<s>', 'eval')
f = eval(co)
g = types.FunctionType(marshal.loads(marshal.dumps(f.__code__)), {})
print("%d.%d" % sys.version_info[:2], importlib.util.MAGIC_NUMBER.hex(), sys.version.split()[0])
print(f(b'x'), f(b'y'), g(b'x'), g(b'y'))
sys.exit(3)
EOF

# check VER: runs the self-check; on success leaves "VER MAGIC FULLVERSION" in $WORK/ok-VER.
check() {
    local v=$1 w="$DIR/bin/python$1" out rc=0
    rm -f "$WORK/ok-$v"
    [[ -x "$w" ]] || { echo "no wrapper $w" >"$WORK/why-$v"; return 1; }
    out="$(cd "$WORK" && timeout 120 "$w" "$WORK/selfcheck.py" 2>&1 </dev/null)" || rc=$?
    local want1="$v ${MAGIC[$v]}" line1 line2
    line1="$(sed -n 1p <<<"$out")"; line2="$(sed -n 2p <<<"$out")"
    if [[ $rc == 3 && "$line1" == "$want1 "* && "$line2" == "True False True False" ]]; then
        echo "$line1" >"$WORK/ok-$v"
        return 0
    fi
    printf 'expected exit 3 and "%s ..." / "True False True False", got exit %s:\n%s\n' \
        "$want1" "$rc" "$out" >"$WORK/why-$v"
    return 1
}

# check_all VER...: runs the checks in parallel; prints the versions that failed.
check_all() {
    local v pids=()
    for v in "$@"; do check "$v" & pids+=($!); done
    for v in "${pids[@]}"; do wait "$v" || true; done
    for v in "$@"; do [[ -f "$WORK/ok-$v" ]] || echo "$v"; done
}

# --------------------------------------------------------------------------
# Pyodide runner: `node pyodide-run.js PYODIDE_DIR ARGS...` behaves like `python ARGS...`.
write_pyodide_runner() {
    cat >"$WORK/pyodide-run.js" <<'EOF'
// Runs Pyodide (CPython compiled to WebAssembly) like a command-line python:
//   node pyodide-run.js PYODIDE_DIR FILE [args...] | -c CODE [args...] | -m MOD [args...] | [-] [args...]
// Exit status: 0, the SystemExit code, 1 for an uncaught exception (traceback
// on stderr), 2 for a bad command line, 70 when the runtime itself dies.
"use strict";
const fs = require("fs");
const path = require("path");

// All output is written synchronously, so nothing is lost at process.exit().
// process.stdout and console are never used: libuv may make a pipe
// non-blocking and then drop what is still queued at exit.
const nap = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
function writeAll(fd, buf) {
  for (let off = 0; off < buf.length;) {
    try { off += fs.writeSync(fd, buf, off, buf.length - off); }
    catch (e) {
      if (e.code === "EAGAIN") { nap(); continue; }
      if (e.code === "EPIPE") return;
      throw e;
    }
  }
}
function readSome(fd, n) {
  const buf = Buffer.alloc(n);
  for (;;) {
    try {
      // A plain Uint8Array: Pyodide does not convert Node's Buffer subclass.
      return new Uint8Array(buf.buffer, buf.byteOffset, fs.readSync(fd, buf, 0, n, null));
    } catch (e) {
      if (e.code === "EAGAIN") { nap(); continue; }
      if (e.code === "EOF") return new Uint8Array(0);
      throw e;
    }
  }
}
const say = (fd, s) => writeAll(fd, Buffer.from(s, "utf8"));
const die = (msg, code) => { say(2, msg + "\n"); process.exit(code); };

// Command line, as far as CPython's goes.
const argv = process.argv.slice(2);
const pyodideDir = path.resolve(argv.shift());
let mode = "stdin", target = null;
while (argv.length) {
  const a = argv[0];
  if (a === "-c" || a === "-m") {
    if (argv.length < 2) die(`Argument expected for the ${a} option`, 2);
    mode = a === "-c" ? "code" : "module"; target = argv[1]; argv.splice(0, 2); break;
  }
  if (a === "-X" || a === "-W") { argv.splice(0, 2); continue; }
  if (/^-[uBEsSIqObd]+$/.test(a) || /^-[XW]./.test(a)) { argv.shift(); continue; }
  if (a === "--") argv.shift();
  else if (a.startsWith("-") && a !== "-") die(`unsupported option ${a} (this python is Pyodide)`, 2);
  if (argv.length) { target = argv.shift(); mode = target === "-" ? "stdin" : "file"; }
  break;
}
let source = null, filename = null, argv0;
if (mode === "file") {
  filename = path.resolve(target);
  try { source = fs.readFileSync(filename, "utf8"); }
  catch (e) { die(`python: can't open file '${target}': ${e.message}`, 2); }
  argv0 = target;
} else if (mode === "code") {
  source = target; filename = "<string>"; argv0 = "-c";
} else if (mode === "stdin") {
  const chunks = [];
  for (let b; (b = readSome(0, 1 << 16)).length;) chunks.push(Buffer.from(b));
  source = Buffer.concat(chunks).toString("utf8"); filename = "<stdin>"; argv0 = "-";
} else {
  argv0 = "-m";
}

// Host folders made visible inside Pyodide at the same path: the current one
// and the script's, unless that would hide Pyodide's own files.
const cwd = process.cwd();
const mounts = [cwd];
if (mode === "file") mounts.push(path.dirname(filename));
const mountable = (p) => p !== "/" && !/^\/(lib|dev|proc|home\/pyodide)(\/|$)/.test(p);

const BOOT = String.raw`
def _boot(a):
    import io, os, sys, traceback
    import _pyhost
    from pyodide.ffi import to_js

    class HostFile(io.RawIOBase):     # the host's fd 0/1/2, unlimited and unbatched
        def __init__(self, fd):
            self._fd = fd
        def fileno(self):
            return self._fd
        def isatty(self):
            return bool(_pyhost.isatty(self._fd))
        def readable(self):
            return self._fd == 0
        def writable(self):
            return self._fd != 0
        def write(self, b):
            b = bytes(b)
            if b:
                _pyhost.write(self._fd, to_js(b))
            return len(b)
        def readinto(self, buf):
            data = _pyhost.read(self._fd, len(buf)).to_bytes()
            buf[:len(data)] = data
            return len(data)

    def stream(fd, errors):
        raw = HostFile(fd)
        if fd == 0:
            return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors=errors)
        return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors=errors,
                                line_buffering=raw.isatty(), write_through=(fd == 2))

    sys.stdin = sys.__stdin__ = stream(0, "strict")
    sys.stdout = sys.__stdout__ = stream(1, "strict")
    sys.stderr = sys.__stderr__ = stream(2, "backslashreplace")
    os.environ.update(a["env"])
    if a["chdir"]:
        os.chdir(a["chdir"])
    sys.argv = list(a["argv"])
    mode = a["mode"]
    sys.path.insert(0, os.path.dirname(a["filename"]) if mode == "file" else
                       os.getcwd() if mode == "module" else "")

    def exit_code(e):
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        try:
            print(e.code, file=sys.stderr)
        except BaseException:
            pass
        return 1

    import __main__
    g = __main__.__dict__
    rc = 0
    try:
        if mode == "module":
            import runpy
            runpy.run_module(a["target"], run_name="__main__", alter_sys=True)
        else:
            if mode == "file":
                g["__file__"] = a["filename"]
            exec(compile(a["source"], a["filename"], "exec"), g)
    except SystemExit as e:
        rc = exit_code(e)
    except BaseException as e:
        # Leave out this frame, as CPython's own traceback would.
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        rc = 1
    try:
        import atexit
        atexit._run_exitfuncs()
    except SystemExit as e:
        rc = exit_code(e)
    except BaseException:
        pass
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except BaseException:
            rc = rc or 120
    return rc

_boot(_RUN_ARGS)
`;

async function main() {
  const { loadPyodide } = require(path.join(pyodideDir, "pyodide.js"));
  const py = await loadPyodide({
    indexURL: pyodideDir + "/",
    stdout: (s) => say(1, s + "\n"),  // only C-level writes to fd 1/2 end up here
    stderr: (s) => say(2, s + "\n"),
  });
  const FS = py.FS;
  for (const m of mounts) {
    if (!mountable(m)) continue;
    try { FS.mkdirTree(m); FS.mount(FS.filesystems.NODEFS, { root: m }, m); }
    catch (e) { /* e.g. already inside a mounted folder */ }
  }
  py.registerJsModule("_pyhost", {
    write: (fd, data) => writeAll(fd, data),
    read: (fd, n) => readSome(fd, n),
    isatty: (fd) => require("tty").isatty(fd),
  });
  const env = Object.assign({}, process.env);
  for (const k of ["HOME", "PWD", "LD_LIBRARY_PATH", "PYTHONHOME", "PYTHONPATH"]) delete env[k];
  const args = { mode, source, filename, target, argv: [argv0, ...argv],
                 chdir: mountable(cwd) ? cwd : null, env };
  return py.runPython(BOOT, { globals: py.toPy({ _RUN_ARGS: args }) });
}

main().then(
  (code) => process.exit(typeof code === "number" ? code : 0),
  (err) => {
    // os._exit(n) arrives here as Emscripten's ExitStatus.
    if (err && typeof err.status === "number") process.exit(err.status);
    const m = /Program terminated with exit\((-?\d+)\)/.exec(String(err && err.message));
    if (m) process.exit(Number(m[1]));
    say(2, `Fatal Pyodide error: ${(err && err.stack) || err}\n`);
    process.exit(70);
  },
);
EOF
    # Replace it only when it changed, and atomically (it may be in use).
    if ! cmp -s "$WORK/pyodide-run.js" "$DIR/pyodide-run.js"; then
        cp "$WORK/pyodide-run.js" "$DIR/pyodide-run.js.new"
        mv -f "$DIR/pyodide-run.js.new" "$DIR/pyodide-run.js"
    fi
}

install_pyodide() {   # VER: npm install into DIR/pyodide-X.Y.Z, then the wrapper
    local v=$1 pv=${PYODIDE[$1]} node
    node="$(command -v node)" || die "node is needed for Python $v (Pyodide)"
    command -v npm >/dev/null || die "npm is needed for Python $v (Pyodide)"
    rm -rf "$DIR/pyodide-$pv"
    npm install --prefix "$DIR/pyodide-$pv" "pyodide@$pv" \
        --no-audit --no-fund --no-update-notifier --loglevel=error >&2
    [[ -f "$DIR/pyodide-$pv/node_modules/pyodide/pyodide.js" ]] || die "npm did not install pyodide@$pv"
    cat >"$DIR/bin/python$v" <<EOF
#!/bin/sh
# Python $v: Pyodide $pv (WebAssembly) on node; see scripts/fetch-pythons.sh.
here="\$(dirname "\$(readlink -f "\$0")")/.."
exec "$node" "\$here/pyodide-run.js" "\$here/pyodide-$pv/node_modules/pyodide" "\$@"
EOF
    chmod +x "$DIR/bin/python$v"
}

# --------------------------------------------------------------------------
# Debian .debs.
ensure_tools() {
    local missing=()
    command -v curl >/dev/null || missing+=(curl)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v gpgv >/dev/null || missing+=(gpgv)
    [[ -f "$KEYRING" ]] || missing+=(debian-archive-keyring)
    command -v dpkg-deb >/dev/null || die "dpkg-deb is needed (a Debian-based host)"
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} with apt-get"
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them (needs root)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

fetch() { curl -fsSL --retry 3 --retry-delay 1 --connect-timeout 20 -o "$2" "$1"; }

# index SUITE: downloads and verifies the suite's amd64 Packages index once, as
# $DL/SUITE.tsv with lines "package <TAB> pool-path <TAB> sha256".
index() {
    local s=$1 want got
    [[ -f "$DL/$s.tsv" ]] && return 0
    fetch "$MIRROR/dists/$s/InRelease" "$DL/$s.InRelease" || die "cannot download $MIRROR/dists/$s/InRelease"
    # Accept it if any signature is valid (a suite is signed by several keys,
    # and an older keyring may not know all of them).
    gpgv --status-fd 1 --keyring "$KEYRING" --output "$DL/$s.Release" "$DL/$s.InRelease" \
        2>/dev/null >"$DL/$s.gpgv" || true
    grep -q '^\[GNUPG:\] VALIDSIG' "$DL/$s.gpgv" && ! grep -q '^\[GNUPG:\] BADSIG' "$DL/$s.gpgv" \
        || die "the signature of $MIRROR/dists/$s/InRelease does not verify with $KEYRING"
    want="$(awk '/^SHA256:/{on=1; next} /^[^ ]/{on=0} on && $3=="main/binary-amd64/Packages.xz"{print $1}' "$DL/$s.Release")"
    [[ -n "$want" ]] || die "dists/$s/InRelease lists no main/binary-amd64/Packages.xz"
    fetch "$MIRROR/dists/$s/main/binary-amd64/Packages.xz" "$DL/$s.Packages.xz" ||
        die "cannot download $MIRROR/dists/$s/main/binary-amd64/Packages.xz"
    got="$(sha256sum "$DL/$s.Packages.xz" | cut -d' ' -f1)"
    [[ "$got" == "$want" ]] || die "dists/$s/main/binary-amd64/Packages.xz: SHA256 mismatch"
    xz -dc "$DL/$s.Packages.xz" |
        awk '/^Package: /{p=$2} /^Filename: /{f=$2} /^SHA256: /{h=$2} /^$/{if(p!="")print p"\t"f"\t"h; p=""} END{if(p!="")print p"\t"f"\t"h}' \
        >"$DL/$s.tsv.new"
    mv "$DL/$s.tsv.new" "$DL/$s.tsv"
    rm -f "$DL/$s.Packages.xz"
}

lookup() { awk -F'\t' -v p="$2" '$1==p{print $2"\t"$3; exit}' "$DL/$1.tsv"; }

# plan_debs VER: picks the suite and the .debs for VER; prints "pool-path <TAB> sha256" lines.
plan_debs() {
    local v=$1 s suite="" p alt hit pkgs extra
    for s in ${SUITES[$v]}; do
        index "$s"
        if [[ -n "$(lookup "$s" "python$v-minimal")" ]]; then suite=$s; break; fi
    done
    [[ -n "$suite" ]] || die "no Debian suite of (${SUITES[$v]}) has python$v-minimal"
    log "Python $v: Debian $suite"
    if [[ $suite == bullseye ]]; then extra=$BULLSEYE_EXTRA; else extra=$RUNTIME_LIBS; fi
    pkgs="python$v-minimal libpython$v-minimal libpython$v-stdlib $extra"
    for p in $pkgs; do
        hit=""
        # A library comes from the interpreter's suite, else from sid.
        for s in "$suite" sid; do
            index "$s"
            for alt in ${p//|/ }; do
                hit="$(lookup "$s" "$alt")"
                [[ -n "$hit" ]] && break 2
            done
        done
        [[ -n "$hit" ]] || die "Python $v: package $p not found in Debian $suite"
        printf '%s\n' "$hit"
    done
}

download_deb() {   # POOL-PATH SHA256: into $DL/debs, kept if already there and intact
    local f="$DL/debs/$(basename "$1")"
    if [[ -f "$f" && "$(sha256sum "$f" | cut -d' ' -f1)" == "$2" ]]; then return 0; fi
    fetch "$MIRROR/$1" "$f.part" || die "cannot download $MIRROR/$1"
    [[ "$(sha256sum "$f.part" | cut -d' ' -f1)" == "$2" ]] || die "$1: SHA256 mismatch"
    mv "$f.part" "$f"
}

install_debs() {   # VER: unpacks the planned .debs into DIR/cpython-VER/root, writes the wrappers
    local v=$1 root="$DIR/cpython-$1" deb d loader
    rm -rf "$root.new" && mkdir -p "$root.new/root"
    while IFS=$'\t' read -r deb _; do
        dpkg-deb -x "$DL/debs/$(basename "$deb")" "$root.new/root"
    done <"$WORK/plan-$v"
    local bin="$root.new/root/usr/bin"
    [[ -x "$bin/python$v" ]] || die "Python $v: no usr/bin/python$v in the .debs"
    mv "$bin/python$v" "$bin/python$v-real"
    # The loader: the private libc's own if one was unpacked, else the host's.
    loader='/lib64/ld-linux-x86-64.so.2'
    for d in usr/lib lib; do
        if [[ -e "$root.new/root/$d/x86_64-linux-gnu/ld-linux-x86-64.so.2" ]]; then
            loader="\$root/$d/x86_64-linux-gnu/ld-linux-x86-64.so.2"; break
        fi
    done
    # root/usr/bin/python3.X is a launcher, so that sys.executable (set with
    # --argv0) is runnable and sys.prefix is found next to it: no PYTHONHOME.
    cat >"$bin/python$v" <<EOF
#!/bin/sh
# Python $v from Debian .debs, run with the libraries of this private root.
unset PYTHONHOME
bin="\$(dirname "\$(readlink -f "\$0")")"
root="\$(dirname "\$(dirname "\$bin")")"
exec "$loader" --argv0 "\$bin/python$v" \\
    --library-path "\$root/usr/lib/x86_64-linux-gnu:\$root/lib/x86_64-linux-gnu" \\
    "\$bin/python$v-real" "\$@"
EOF
    chmod +x "$bin/python$v"
    rm -rf "$root" && mv "$root.new" "$root"
    cat >"$DIR/bin/python$v" <<EOF
#!/bin/sh
# Python $v: Debian .debs unpacked in ../cpython-$v; see scripts/fetch-pythons.sh.
exec "\$(dirname "\$(readlink -f "\$0")")/../cpython-$v/root/usr/bin/python$v" "\$@"
EOF
    chmod +x "$DIR/bin/python$v"
}

use_host_python311() {   # true if a host python3.11 passes the self-check
    local c
    for c in /usr/bin/python3.11 /usr/local/bin/python3.11 "$(command -v python3.11 || true)"; do
        [[ -n "$c" && -x "$c" ]] || continue
        cat >"$DIR/bin/python3.11" <<EOF
#!/bin/sh
# Python 3.11: the host's $c; see scripts/fetch-pythons.sh.
unset PYTHONHOME
exec "$c" "\$@"
EOF
        chmod +x "$DIR/bin/python3.11"
        if check 3.11; then log "Python 3.11: host $c"; return 0; fi
    done
    rm -f "$DIR/bin/python3.11"
    return 1
}

# --------------------------------------------------------------------------
write_pyodide_runner

mapfile -t todo < <(check_all "${VERSIONS[@]}")
if ((${#todo[@]} == 0)); then
    log "all interpreters already present"
else
    log "to install: ${todo[*]}"
    declare -A jobs=()
    deb_versions=()
    for v in "${todo[@]}"; do
        if [[ -n "${PYODIDE[$v]:-}" ]]; then
            log "Python $v: npm pyodide@${PYODIDE[$v]}"
            install_pyodide "$v" >"$WORK/log-$v" 2>&1 &
            jobs[$v]=$!
        elif [[ $v == 3.11 ]] && use_host_python311; then
            :
        else
            deb_versions+=("$v")
        fi
    done

    if ((${#deb_versions[@]})); then
        ensure_tools
        mkdir -p "$DL/debs"
        planned=()
        for v in "${deb_versions[@]}"; do
            # (Run as a job so that `set -e` applies inside: see bash's errexit rules.)
            plan_debs "$v" >"$WORK/plan-$v" 2>"$WORK/fail-$v" & wait $! && planned+=("$v")
            cat "$WORK/fail-$v" >&2
        done
        if ((${#planned[@]})); then
            log "downloading $(cat "${planned[@]/#/$WORK/plan-}" | sort -u | wc -l) .debs"
            pids=()
            while IFS=$'\t' read -r deb sha; do
                download_deb "$deb" "$sha" & pids+=($!)
            done < <(cat "${planned[@]/#/$WORK/plan-}" | sort -u)
            for p in "${pids[@]}"; do wait "$p" || die "a .deb download failed (see above)"; done
        fi
        for v in "${planned[@]}"; do
            install_debs "$v" >"$WORK/log-$v" 2>&1 &
            jobs[$v]=$!
        done
    fi

    for v in "${!jobs[@]}"; do
        wait "${jobs[$v]}" || cp "$WORK/log-$v" "$WORK/fail-$v"
    done
    check_all "${todo[@]}" >/dev/null
fi

# --------------------------------------------------------------------------
failed=()
for v in "${VERSIONS[@]}"; do
    if [[ -f "$WORK/ok-$v" ]]; then
        printf '  python%-5s %s\n' "$v" "$(cat "$WORK/ok-$v")"
    else
        failed+=("$v")
    fi
done
if ((${#failed[@]})); then
    for v in "${failed[@]}"; do
        printf '\nfetch-pythons: FAILED: python%s\n' "$v" >&2
        cat "$WORK/fail-$v" "$WORK/why-$v" 2>/dev/null | sed 's/^/    /' >&2 || true
    done
    die "no working interpreter for Python ${failed[*]} (see above)"
fi
rm -rf "$DL"
log "done in $((SECONDS - start)) s; interpreters in:"
echo "$DIR/bin"
