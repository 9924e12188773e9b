"""Where a forward pass spends its time, op by op, from `perf script` call stacks.

The thread that calls TextModel::forward runs its share of every parallel job and waits for the other
threads inside the op that started the job, so the ops its samples fall in divide the wall time as the op
boundaries do. Only its samples (stacks through TextModel::forward) are counted.

usage: perf script -i perf.data | python3 bench/profile_ops.py   (bench/profile.mjs runs the whole thing)
"""
import collections
import re
import sys

# Named by the innermost frame that matches, whatever called it.
LEAF_OPS = [
    ("l4::attend", "attention: softmax(q k^T) v"),
    ("l4::silu_mul", "SiLU gating"),
    ("l4::KVCache::append", "KV cache append"),
    ("l4::rms_norm", "RMSNorm"),
]
# Kernel calls named by the model function they were made from (the innermost one on the stack).
CALLER_OPS = {
    "l4::attention": [("l4::linear", "attention: o_proj"), ("run_batch", "attention: q/k/v projections")],
    "l4::moe": [("l4::linear", "MoE: router"), ("run_batch", "MoE: routed experts + shared expert")],
    "l4::mlp": [("l4::linear", "dense MLP"), ("run_batch", "dense MLP")],
    "l4::TextModel::forward": [("l4::linear", "lm_head"), ("row_to_f32", "embedding")],
}


def symbol(frame):
    """The function's qualified name, without arguments, offset and library."""
    name = re.sub(r"\+0x[0-9a-f]+ .*$", "", frame).replace("(anonymous namespace)", "{anon}")
    return name.split("(")[0].strip()


def op_of(frames):
    for frame in frames:
        for key, op in LEAF_OPS:
            if key in frame:
                return op
    for i, frame in enumerate(frames):
        ops = CALLER_OPS.get(symbol(frame))
        if ops is None:
            continue
        for key, op in ops:
            if any(key in symbol(inner) for inner in frames[:i]):
                return op
        return symbol(frame).split("::")[-1] + ": other"
    return None


def main():
    counts = collections.Counter()
    frames = []
    for line in list(sys.stdin) + [""]:
        line = line.rstrip()
        if line.startswith((" ", "\t")):
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                frames.append(parts[1])
            continue
        if frames and any("TextModel::forward" in f for f in frames):
            counts[op_of(frames) or "other"] += 1
        frames = []
    total = sum(counts.values())
    print(f"| op | share of the forward ({total} samples) |\n| --- | ---: |")
    for op, n in counts.most_common():
        print(f"| {op} | {100 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
