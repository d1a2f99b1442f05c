#!/usr/bin/env bash
# The gpu family on a machine with an NVIDIA GPU: NVML's numbers against nvidia-smi on the same
# machine, and the CUDA probes on the installed driver (libcuda.so.1, no toolkit needed), with
# cuda_check.c's known calls. Run from the repository root, as root, with the profiler built:
#
#   cargo build --release -p profiler-user && sudo tests/gpu-hardware/check.sh [OUT_DIR]
#
# Writes OUT_DIR (default: ./gpu-check) with nvidia-smi's view, the report, and check.txt: one
# line per check, `ok` or `FAIL`. Exits 1 when a check failed.
set -u
out=${1:-gpu-check}
mkdir -p "$out"
here=$(dirname "$0")
profiler=${PROFILER:-target/release/profiler}
cc -O1 -g -fno-omit-frame-pointer -o "$out/cuda_check" "$here/cuda_check.c" -ldl || exit 1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
"$profiler" run --level memory --json "$out/report.json" -- "$out/cuda_check" 4000 \
	> "$out/profiler.txt" 2> "$out/profiler.err" &
sleep 3
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits \
	> "$out/apps.csv" 2>&1
wait
python3 - "$out" <<'PY' | tee "$out/check.txt"
import json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/report.json"))
ok = True
def check(name, cond, detail=""):
    global ok
    ok &= bool(cond)
    print(("ok   " if cond else "FAIL ") + name + (f": {detail}" if detail else ""))
g = r.get("gpu") or {}
check("nvml ran", g.get("nvml_unavailable") is None and g.get("devices"), g.get("nvml_unavailable"))
apps = [l.split(",") for l in open(f"{out}/apps.csv") if "," in l]
smi = max((int(m) for _, m in apps), default=0) * (1 << 20)
peak = g.get("gpu_memory", {}).get("peak", 0)
check("nvml target memory within 5% of nvidia-smi", smi and abs(peak - smi) <= 0.05 * smi, f"nvml {peak} smi {smi}")
c = g.get("cuda") or {}
calls = {f["name"]: f["calls"] for l in c.get("libraries", []) for f in l["functions"]}
check("cuMemAlloc_v2 calls", calls.get("cuMemAlloc_v2") == 8 + 16 + 1, calls)
check("cuMemFree_v2 calls", calls.get("cuMemFree_v2") == 16, calls)
check("cuMemcpyHtoD_v2 calls", calls.get("cuMemcpyHtoD_v2") == 4, calls)
sites = {s["function"]: s for s in c.get("sites", [])}
keep = sites.get("keep", {}).get("outstanding", {})
check("keep holds 8 x 64 MiB", keep == {"bytes": 8 << 26, "count": 8}, keep)
errs = [(e["call"], e["error"]) for e in c.get("errors", [])]
check("the failed allocation", ("cuMemAlloc_v2", "CUDA_ERROR_OUT_OF_MEMORY") in errs, errs)
pats = [p["id"] for p in r.get("errors", {}).get("patterns", [])]
check("classified CUDA_OUT_OF_MEMORY", "CUDA_OUT_OF_MEMORY" in pats, pats)
sys.exit(0 if ok else 1)
PY
