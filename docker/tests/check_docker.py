#!/usr/bin/python3
"""check_docker.py NUTHATCH REPO: the docker/ files agree with the code.

No container engine runs here, so the files are checked as text:
  - docker/compose.yaml and docker/compose.milvus.yaml parse as YAML
    (python3-yaml); every service has a pinned image tag (not "latest") or
    is built from docker/Dockerfile, and every long-running service has a
    health check; the Milvus file sets nothing it does not share (etcd,
    MinIO and Nuthatch come from compose.yaml) and mounts milvus-user.yaml,
    which sets mq.type kafka and kafka.brokerList at Nuthatch;
  - every configuration key passed to Nuthatch -- the nuthatch service's
    command, the Dockerfile's CMD, and each --KEY in docs/milvus.md,
    docs/operations.md and docker/README.md -- is a key of `nuthatch --help`;
  - docker/Dockerfile: pinned Debian slim base images, each stage installs
    its packages by scripts/install-deps.sh with a mode the script knows
    (and never by apt-get itself), the last stage runs as a non-root user
    and has a HEALTHCHECK.
Exit status 0 when all hold; otherwise every failure is printed.
"""
import re
import subprocess
import sys

import yaml

NUTHATCH, REPO = sys.argv[1], sys.argv[2]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def read(path):
    with open(f"{REPO}/{path}", encoding="utf-8") as f:
        return f.read()


help_text = subprocess.run([NUTHATCH, "--help"], capture_output=True, text=True, check=True).stdout
KEYS = set(re.findall(r"^  --([a-z0-9.]+) \(", help_text, re.M))
if len(KEYS) < 25:
    fail(f"nuthatch --help lists only {len(KEYS)} keys")


def check_key(key, where):
    if key not in KEYS:
        fail(f"{where}: --{key} is not a key of nuthatch --help")


def check_args(args, where):
    """--KEY VALUE / --KEY=VALUE arguments: every KEY known."""
    n = 0
    for a in args:
        m = re.match(r"^--([a-z0-9.]+)(=|$)", str(a))
        if m:
            check_key(m.group(1), where)
            n += 1
    return n


# ---- compose files
compose = {}
for name in ("compose.yaml", "compose.milvus.yaml"):
    try:
        compose[name] = yaml.safe_load(read(f"docker/{name}"))
    except yaml.YAMLError as e:
        fail(f"docker/{name}: not YAML: {e}")
        compose[name] = {}
    for svc, spec in (compose[name].get("services") or {}).items():
        where = f"docker/{name}: service {svc}"
        image = spec.get("image", "")
        if not image and "build" not in spec:
            fail(f"{where}: neither image nor build")
        if image and "build" not in spec:
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                fail(f"{where}: image {image!r} has no pinned tag")
        if "build" in spec and spec["build"].get("dockerfile") != "docker/Dockerfile":
            fail(f"{where}: built from something else than docker/Dockerfile")
        long_running = spec.get("restart") != "no"
        if long_running and "healthcheck" not in spec:
            fail(f"{where}: no healthcheck")
        for dep, cond in (spec.get("depends_on") or {}).items():
            if not isinstance(cond, dict) or "condition" not in cond:
                fail(f"{where}: depends on {dep} without a condition")

base = compose["compose.yaml"].get("services") or {}
for svc in ("etcd", "minio", "nuthatch"):
    if svc not in base:
        fail(f"docker/compose.yaml: no service {svc}")
nh = base.get("nuthatch", {})
cmd = nh.get("command") or []
if check_args(cmd, "docker/compose.yaml nuthatch command") < 4:
    fail("docker/compose.yaml: the nuthatch command passes fewer than 4 settings")
args = dict(a[2:].split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
if not args.get("storage.url", "").startswith("s3://") or "endpoint=http://minio:9000" not in args.get(
    "storage.url", ""
):
    fail("docker/compose.yaml: storage.url is not the MinIO service")
if args.get("metadata.url", "").split("/")[2:3] != ["etcd:2379"]:
    fail("docker/compose.yaml: metadata.url is not the etcd service")
mlisten = args.get("metrics.listen", "")
if not mlisten.endswith(":9100") or "9100/readyz" not in " ".join(nh.get("healthcheck", {}).get("test", [])):
    fail("docker/compose.yaml: the nuthatch health check does not ask /readyz on metrics.listen")
adv = args.get("advertised.listeners", "")
if adv != "PLAINTEXT://nuthatch:9092":
    fail(f"docker/compose.yaml: advertised.listeners {adv!r}, expected PLAINTEXT://nuthatch:9092")

milvus = compose["compose.milvus.yaml"].get("services") or {}
if set(milvus) != {"milvus"}:
    fail(f"docker/compose.milvus.yaml: services {sorted(milvus)}, expected only milvus")
mv = milvus.get("milvus", {})
if not re.match(r"^milvusdb/milvus:v2\.5\.\d+$", mv.get("image", "")):
    fail(f"docker/compose.milvus.yaml: image {mv.get('image')!r} is no pinned Milvus 2.5")
env = mv.get("environment") or {}
if env.get("ETCD_ENDPOINTS") != "etcd:2379" or env.get("MINIO_ADDRESS") != "minio:9000":
    fail("docker/compose.milvus.yaml: Milvus does not share compose.yaml's etcd and MinIO")
if "./milvus-user.yaml:/milvus/configs/user.yaml:ro" not in (mv.get("volumes") or []):
    fail("docker/compose.milvus.yaml: milvus-user.yaml is not mounted as Milvus's user.yaml")
for dep in ("etcd", "minio", "nuthatch"):
    if dep not in (mv.get("depends_on") or {}):
        fail(f"docker/compose.milvus.yaml: milvus does not wait for {dep}")
user = yaml.safe_load(read("docker/milvus-user.yaml")) or {}
if (user.get("mq") or {}).get("type") != "kafka":
    fail("docker/milvus-user.yaml: mq.type is not kafka")
broker = (user.get("kafka") or {}).get("brokerList")
if broker != adv.replace("PLAINTEXT://", ""):
    fail(f"docker/milvus-user.yaml: kafka.brokerList {broker!r} is not Nuthatch's advertised listener")

# ---- the Dockerfile
dockerfile = read("docker/Dockerfile")
text = re.sub(r"\\\n", " ", dockerfile)
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
install = read("scripts/install-deps.sh")
modes = set(re.findall(r"^(--[a-z]+)\) MODE=", install, re.M))
default_image = re.search(r"^ARG DEBIAN_IMAGE=(\S+)", dockerfile, re.M)
if not default_image or not re.match(r"^debian:12(\.\d+)?-slim$", default_image.group(1)):
    fail("docker/Dockerfile: the base image is no pinned debian:12.N-slim")
stages = []
for l in lines:
    word = l.split()[0].upper()
    if word == "FROM":
        stages.append({"from": l, "run": [], "user": None, "health": False, "cmd": None})
    elif not stages:
        continue
    elif word == "RUN":
        stages[-1]["run"].append(l)
    elif word == "USER":
        stages[-1]["user"] = l.split()[1]
    elif word == "HEALTHCHECK":
        stages[-1]["health"] = True
    elif word == "CMD":
        stages[-1]["cmd"] = l
if len(stages) < 2:
    fail("docker/Dockerfile: not multi-stage")
for i, st in enumerate(stages):
    if "${DEBIAN_IMAGE}" not in st["from"]:
        fail(f"docker/Dockerfile: stage {i} is not FROM ${{DEBIAN_IMAGE}}")
    if not st["run"] or "install-deps.sh" not in st["run"][0]:
        fail(f"docker/Dockerfile: stage {i}'s first RUN does not call scripts/install-deps.sh")
    for r in st["run"]:
        if re.search(r"\bapt(-get)?\s+install\b", r):
            fail(f"docker/Dockerfile: stage {i} installs by hand: {r}")
        for mode in re.findall(r"install-deps\.sh\s+(--[a-z]+)", r):
            if mode not in modes:
                fail(f"docker/Dockerfile: install-deps.sh has no mode {mode}")
    if i > 0 and not re.search(r"COPY scripts/install-deps.sh", dockerfile):
        fail("docker/Dockerfile: install-deps.sh is not copied in")
last = stages[-1] if stages else {}
if not last.get("user") or last["user"].split(":")[0] in ("root", "0"):
    fail("docker/Dockerfile: the last stage does not run as a non-root user")
if not last.get("health"):
    fail("docker/Dockerfile: no HEALTHCHECK")
if last.get("cmd"):
    check_args(re.findall(r'"([^"]*)"', last["cmd"]), "docker/Dockerfile CMD")
else:
    fail("docker/Dockerfile: no CMD")
if "--target nuthatch" not in text:
    fail("docker/Dockerfile: the build stage does not build the nuthatch target")

# ---- docs: every --KEY they tell an operator to pass
for doc in ("docs/milvus.md", "docs/operations.md", "docker/README.md"):
    try:
        body = read(doc)
    except FileNotFoundError:
        fail(f"{doc}: missing")
        continue
    for key in re.findall(r"(?<![\w-])--([a-z0-9]+(?:\.[a-z0-9]+)+)", body):
        check_key(key, doc)

print(f"check_docker: {len(KEYS)} keys in --help; {len(failures)} failures")
sys.exit(1 if failures else 0)
