"""Drives one real Jupyter kernel for the vitest suites (test/helpers/jupyter.ts).

Run with the project's env: .venv/bin/python test/helpers/jupyter_driver.py --kernel llama4-ts --cwd DIR

Protocol: JSON lines. On start it prints {"event": "ready", "startup_s": ...} once the kernel
answers kernel_info. Then for each request line
    {"id": 1, "code": "...", "timeout": 60, "interrupt_after": null}
it executes the code and prints
    {"id": 1, "status": "ok"|"error"|"abort"|"timeout", "messages": [{"msg_type", "content"}...],
     "elapsed_s": ..., "interrupt_to_reply_s": ... (when interrupted)}
where messages are the IOPub messages of that request (status messages left out), in order.
"interrupt_after": seconds after which the driver interrupts the kernel (SIGINT, as JupyterLab's
stop button does). {"op": "shutdown"} stops the kernel and exits.
"""

import argparse
import json
import queue
import sys
import time

from jupyter_client.manager import KernelManager


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def execute(km, kc, req):
    code = req["code"]
    timeout = float(req.get("timeout") or 60)
    interrupt_after = req.get("interrupt_after")
    msg_id = kc.execute(code, store_history=True, allow_stdin=False)
    start = time.monotonic()
    interrupted_at = None
    messages = []
    reply = None
    idle = False
    while reply is None or not idle:
        now = time.monotonic()
        if now - start > timeout:
            return {"status": "timeout", "messages": messages, "elapsed_s": now - start}
        if interrupt_after is not None and interrupted_at is None and now - start >= float(interrupt_after):
            km.interrupt_kernel()
            interrupted_at = time.monotonic()
        try:
            msg = kc.get_iopub_msg(timeout=0.02)
            if msg["parent_header"].get("msg_id") == msg_id:
                if msg["msg_type"] == "status":
                    if msg["content"]["execution_state"] == "idle":
                        idle = True
                else:
                    messages.append({"msg_type": msg["msg_type"], "content": msg["content"]})
        except queue.Empty:
            pass
        if reply is None:
            try:
                shell = kc.get_shell_msg(timeout=0.001)
                if shell["parent_header"].get("msg_id") == msg_id:
                    reply = shell
                    reply_at = time.monotonic()
            except queue.Empty:
                pass
    out = {
        "status": reply["content"]["status"],
        "messages": messages,
        "elapsed_s": reply_at - start,
    }
    if interrupted_at is not None:
        out["interrupt_to_reply_s"] = reply_at - interrupted_at
    if out["status"] != "ok":
        # tslab aborts every request that arrives within 200 ms of a failed cell (its queue reset);
        # a person clicking "run" would not be that fast, a test would.
        time.sleep(0.3)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="llama4-ts")
    ap.add_argument("--cwd", required=True)
    args = ap.parse_args()

    t0 = time.monotonic()
    km = KernelManager(kernel_name=args.kernel)
    km.start_kernel(cwd=args.cwd)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        emit({"event": "ready", "startup_s": time.monotonic() - t0, "resource_dir": km.kernel_spec.resource_dir})
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            req = json.loads(line)
            if req.get("op") == "shutdown":
                break
            result = execute(km, kc, req)
            result["id"] = req.get("id")
            emit(result)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


if __name__ == "__main__":
    main()
