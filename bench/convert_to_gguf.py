"""Converts a benchmark checkpoint to a GGUF (bf16, or f32 for checks) with the vendored llama.cpp's own converter.

llama.cpp picks its pre-tokenizer by hashing how the tokenizer splits a fixed test string and looking the
hash up in a table of known models. The real 202048-token Llama 4 tokenizer is in that table; the small
8192-token one of the MoE shape is not (different merges give different ids), although it uses Llama 4's
split pattern. For that case only, this wrapper answers "llama4", after checking that the tokenizer's
split regex is Llama 4's, instead of editing the vendored tree.

usage: python3 bench/convert_to_gguf.py LLAMA_CPP_DIR HF_DIR OUT.gguf [OUTTYPE=bf16]
"""
import json
import logging
import sys
from pathlib import Path

# Meta's Llama 4 pre-tokenizer split pattern (also in test/fixtures/make_tokenizer_fixtures.py).
LLAMA4_SPLIT = (
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
    r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
    r"""|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def split_regexes(hf_dir: Path) -> list[str]:
    with open(hf_dir / "tokenizer.json", encoding="utf-8") as f:
        pre = json.load(f)["pre_tokenizer"]
    steps = pre.get("pretokenizers", [pre])
    return [s["pattern"]["Regex"] for s in steps if s.get("type") == "Split"]


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    llama_cpp, hf_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    outtype = sys.argv[4] if len(sys.argv) == 5 else "bf16"  # f32 for precision checks
    sys.path.insert(0, str(llama_cpp / "gguf-py"))
    sys.path.insert(0, str(llama_cpp))
    import convert_hf_to_gguf
    from conversion.base import TextModel

    known = TextModel.get_vocab_base_pre

    def vocab_base_pre(self, tokenizer):
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            if split_regexes(hf_dir) != [LLAMA4_SPLIT]:
                raise
            logging.getLogger(__name__).warning("pre-tokenizer hash not in llama.cpp's table; "
                                                "the split pattern is Llama 4's, so using 'llama4'")
            return "llama4"

    TextModel.get_vocab_base_pre = vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py", str(hf_dir), "--outtype", outtype, "--outfile", out]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
