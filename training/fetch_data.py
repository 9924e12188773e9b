#!/usr/bin/env python3
"""Fetch and prepare the training corpus of the embedded model (models/llama4-tiny).

Sources (both pinned by version and sha256; see training/README.md for the licences):
  * Debian package r-cran-janeaustenr 1.0.0-1 (Debian 12 "bookworm", main): the full text of Jane
    Austen's six novels (public domain), packaged under the MIT licence by Julia Silge. Fetched with
    `apt-get download`; the novels are read from the package's R lazy-load database
    (usr/lib/R/site-library/janeaustenr/data/Rdata.rdb/.rdx) by training/rdata.py, without R.
  * PyPI package chatterbot-corpus 1.3.3 (source distribution): short English conversations in
    chatterbot_corpus/data/english/*.yml, BSD-3-Clause (license.md in the sdist).

Output, under training/.data/ (gitignored):
  raw/            the downloaded .deb and .tar.gz
  corpus.jsonl    one document a line: {"id", "source", "split", "kind": "prose"|"chat", "text" | "messages"}
  corpus_stats.json

Documents:
  * prose: one per chapter, paragraphs unwrapped (one line each, separated by a blank line), italics
    underscores, editorial [notes] and "* * *" separators removed.
  * chat (Austen): runs of consecutive paragraphs that are pure quoted speech become conversations whose
    turns alternate user / assistant (at most 6 turns, ending on an assistant turn), quotes removed.
  * chat (chatterbot): each conversation's lines alternate user / assistant.
Validation split (deterministic): every chapter whose index within its novel is = 3 (mod 20), i.e.
chapters 4, 24, 44 of each novel, with the dialogue taken from them; every 10th conversation of
each chatterbot file. Nothing else is random.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rdata  # noqa: E402

DATA = os.path.join(HERE, ".data")

DEB_NAME, DEB_VERSION = "r-cran-janeaustenr", "1.0.0-1"
DEB_FILE = "r-cran-janeaustenr_1.0.0-1_all.deb"
DEB_SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
PYPI_NAME, PYPI_VERSION = "chatterbot-corpus", "1.3.3"
PYPI_FILE = "chatterbot_corpus-1.3.3.tar.gz"
PYPI_SHA256 = "615b5c4c605154f60ae51d03ed918ed92e9d32bc2b144b759bbc64ecdbe18481"

NOVELS = [  # (R variable, title, year)
    ("sensesensibility", "Sense and Sensibility", 1811),
    ("prideprejudice", "Pride and Prejudice", 1813),
    ("mansfieldpark", "Mansfield Park", 1814),
    ("emma", "Emma", 1815),
    ("northangerabbey", "Northanger Abbey", 1817),
    ("persuasion", "Persuasion", 1817),
]
VAL_EVERY, VAL_AT = 20, 3
CHAT_VAL_EVERY = 10
MAX_TURNS = 6


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(raw: str) -> tuple[str, str]:
    os.makedirs(raw, exist_ok=True)
    deb = os.path.join(raw, DEB_FILE)
    if not os.path.exists(deb) or sha256(deb) != DEB_SHA256:
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o777)  # apt's sandbox user must be able to write there
            cmd = ["apt-get", "download", f"{DEB_NAME}={DEB_VERSION}"]
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"`{' '.join(cmd)}` failed (run `apt-get update` first?):\n{r.stderr}")
            shutil.move(os.path.join(tmp, DEB_FILE), deb)
    if sha256(deb) != DEB_SHA256:
        sys.exit(f"{deb}: sha256 mismatch")
    sdist = os.path.join(raw, PYPI_FILE)
    if not os.path.exists(sdist) or sha256(sdist) != PYPI_SHA256:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", raw,
               f"{PYPI_NAME}=={PYPI_VERSION}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"`{' '.join(cmd)}` failed:\n{r.stderr}")
    if sha256(sdist) != PYPI_SHA256:
        sys.exit(f"{sdist}: sha256 mismatch")
    return deb, sdist


# ---------------------------------------------------------------- Austen

HEADING = re.compile(r"^\s*(CHAPTER|Chapter)\s+([0-9]+|[IVXLC]+)\.?\s*$")
VOLUME = re.compile(r"^\s*(VOLUME|Volume)\s+([0-9]+|[IVXLC]+)\.?\s*$")


def clean_paragraph(p: str) -> str:
    p = re.sub(r"\s+", " ", p).strip()
    p = re.sub(r"_([^_]+)_", r"\1", p)  # _italics_
    p = p.replace("_", "")
    p = re.sub(r"(?<=[\w.,;!?\"'])\*(?=\s|$)", "", p)  # footnote markers
    return p.strip()


def split_chapters(lines: list[str]) -> list[list[str]]:
    """Lines of a novel -> chapters, each a list of cleaned paragraphs (front matter and headings dropped)."""
    chapters: list[list[str]] = []
    current: list[str] | None = None
    para: list[str] = []
    in_note = False

    def flush():
        nonlocal para
        if current is not None and para:
            text = clean_paragraph(" ".join(para))
            if text and not re.fullmatch(r"[*\s]+", text) and text.upper() != "FINIS" and not text.startswith("THE END"):
                current.append(text)
        para = []

    for raw in lines:
        line = raw if raw is not None else ""
        stripped = line.strip()
        if in_note:  # editorial [notes] can span lines
            if "]" in stripped:
                in_note = False
            continue
        if stripped.startswith("["):
            flush()
            in_note = "]" not in stripped
            continue
        if HEADING.match(stripped):
            flush()
            current = []
            chapters.append(current)
            continue
        if VOLUME.match(stripped):
            flush()
            continue
        if not stripped:
            flush()
            continue
        para.append(stripped)
    flush()
    return [c for c in chapters if c]


def quoted_speech(p: str) -> str | None:
    """A paragraph that is (almost) only dialogue -> the spoken words, else None.

    Accepts '"Words."' and '"Words," said he, "more words."' (the narration between the quotes is
    dropped when it is short); the paragraph must start and end inside quotes."""
    if not p.startswith('"') or not p.endswith('"') or p.count('"') % 2:
        return None
    parts = p.split('"')
    spoken, narration = parts[1::2], parts[2:-1:2]
    if any(len(n.split()) > 6 for n in narration):
        return None
    text = " ".join(s.strip() for s in spoken if s.strip())
    text = re.sub(r",\s*$", ".", text)
    text = text.replace(", ,", ",")
    return text if len(text) >= 2 else None


def austen_documents(deb: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        base = os.path.join(tmp, "usr/lib/R/site-library/janeaustenr/data/Rdata")
        novels = rdata.read_lazyload_db(base)
    docs = []
    for var, title, _year in NOVELS:
        chapters = split_chapters(novels[var].value)
        for i, paras in enumerate(chapters):
            split = "val" if i % VAL_EVERY == VAL_AT else "train"
            docs.append({"id": f"austen/{var}/{i + 1}", "source": "austen", "split": split, "kind": "prose",
                         "text": "\n\n".join(paras)})
            # dialogue runs -> chats
            run: list[str] = []
            n = 0
            for p in paras + [""]:
                s = quoted_speech(p) if p else None
                if s is not None:
                    run.append(s)
                    continue
                while len(run) >= 2:
                    turns, run = run[:MAX_TURNS], run[MAX_TURNS:]
                    if len(turns) % 2:
                        turns = turns[:-1]
                    msgs = [{"role": "user" if j % 2 == 0 else "assistant", "content": t} for j, t in enumerate(turns)]
                    n += 1
                    docs.append({"id": f"austen/{var}/{i + 1}/chat{n}", "source": "austen", "split": split,
                                 "kind": "chat", "messages": msgs})
                run = []
    return docs


# ---------------------------------------------------------------- chatterbot

def chatterbot_documents(sdist: str) -> list[dict]:
    import yaml

    docs = []
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers()
                          if re.search(r"/chatterbot_corpus/data/english/[^/]+\.yml$", m.name)), key=lambda m: m.name)
        for m in members:
            data = yaml.safe_load(tar.extractfile(m).read().decode("utf-8"))
            topic = os.path.splitext(os.path.basename(m.name))[0]
            for k, conv in enumerate(data.get("conversations") or []):
                lines = [str(x).strip() for x in conv if x is not None and str(x).strip()]
                if len(lines) % 2:
                    lines = lines[:-1]
                if len(lines) < 2:
                    continue
                msgs = [{"role": "user" if j % 2 == 0 else "assistant", "content": t} for j, t in enumerate(lines)]
                split = "val" if k % CHAT_VAL_EVERY == CHAT_VAL_EVERY - 1 else "train"
                docs.append({"id": f"chatterbot/{topic}/{k}", "source": "chatterbot", "split": split,
                             "kind": "chat", "messages": msgs})
    return docs


def doc_chars(d: dict) -> int:
    return len(d["text"]) if d["kind"] == "prose" else sum(len(m["content"]) for m in d["messages"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA, help="output folder (default training/.data)")
    args = ap.parse_args()
    deb, sdist = fetch(os.path.join(args.data, "raw"))
    docs = austen_documents(deb) + chatterbot_documents(sdist)
    out = os.path.join(args.data, "corpus.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    stats: dict = {}
    for d in docs:
        key = f"{d['source']}/{d['kind']}/{d['split']}"
        s = stats.setdefault(key, {"docs": 0, "chars": 0})
        s["docs"] += 1
        s["chars"] += doc_chars(d)
    stats["total_chars"] = sum(doc_chars(d) for d in docs)
    stats["sources"] = {
        "austen": {"registry": "Debian 12 (bookworm) main", "package": DEB_NAME, "version": DEB_VERSION,
                   "file": DEB_FILE, "sha256": DEB_SHA256},
        "chatterbot": {"registry": "PyPI", "package": PYPI_NAME, "version": PYPI_VERSION, "file": PYPI_FILE,
                       "sha256": PYPI_SHA256},
    }
    with open(os.path.join(args.data, "corpus_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps({k: v for k, v in stats.items() if k != "sources"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
