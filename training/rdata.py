"""A small reader for R's serialization format (XDR, versions 2 and 3) and R lazy-load databases.

Enough of the format to read the character vectors that R data packages store in
`data/Rdata.rdb` / `data/Rdata.rdx` (the janeaustenr novels), without installing R.
Environments, closures and byte code are read structurally but not interpreted.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib

# SEXP types
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP = 7, 8, 9, 10
INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 13, 14, 15, 16, 17
VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = 19, 20, 21, 22, 23, 24, 25
# pseudo types used only in the stream
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP = 255, 254, 253, 252
MISSINGARG_SXP, BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP = 251, 250, 249, 248
PERSISTSXP, EMPTYENV_SXP, BASEENV_SXP, ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 247, 242, 241, 240, 239, 238

NA_INT = -(2**31)


class RObject:
    """A decoded R value: `type`, `value` (list / str / bytes / None) and `attributes` (dict)."""

    def __init__(self, rtype, value=None, attributes=None, tag=None):
        self.type = rtype
        self.value = value
        self.attributes = attributes or {}
        self.tag = tag

    def __repr__(self):
        return f"RObject(type={self.type}, value={str(self.value)[:60]!r}, attributes={list(self.attributes)})"


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.refs: list = []

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("R stream: unexpected end of data")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def header(self):
        fmt = self.take(2)
        if fmt != b"X\n":
            raise ValueError(f"R stream: only the XDR format is supported, got {fmt!r}")
        version = self.int()
        self.int()  # writer's R version
        self.int()  # minimal reader version
        if version == 3:
            n = self.int()
            self.take(n)  # native encoding
        elif version != 2:
            raise ValueError(f"R stream: unsupported serialization version {version}")

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if t == NILVALUE_SXP:
            return None
        if t in (EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP, BASENAMESPACE_SXP):
            return RObject(t)
        if t == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if t == PERSISTSXP:
            obj = RObject(t, self.strings_body())
            self.refs.append(obj)
            return obj
        if t in (NAMESPACESXP, PACKAGESXP):
            obj = RObject(t, self.strings_body())
            self.refs.append(obj)
            return obj
        if t == SYMSXP:
            name = self.item()  # a CHARSXP
            obj = RObject(SYMSXP, name)
            self.refs.append(obj)
            return obj
        if t == ENVSXP:
            obj = RObject(ENVSXP)
            self.refs.append(obj)
            self.int()  # locked
            enclos = self.item()
            frame = self.item()
            hashtab = self.item()
            attrib = self.item()
            obj.value = {"enclos": enclos, "frame": frame, "hashtab": hashtab}
            obj.attributes = self.as_attributes(attrib)
            return obj
        if t in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLANGSXP, ATTRLISTSXP):
            # A pairlist: read it iteratively along its CDR chain.
            cells = []
            first_attr = None
            cur_t, cur_has_attr, cur_has_tag = t, has_attr, has_tag
            while True:
                attr = self.item() if cur_has_attr else None
                tag = self.item() if cur_has_tag else None
                car = self.item()
                if first_attr is None and attr is not None:
                    first_attr = attr
                cells.append((_symbol_name(tag), car))
                nxt = self.int()
                nt = nxt & 0xFF
                if nt in (LISTSXP, LANGSXP, DOTSXP, ATTRLISTSXP, ATTRLANGSXP) and cur_t not in (CLOSXP, PROMSXP):
                    cur_t, cur_has_attr, cur_has_tag = nt, bool(nxt & (1 << 9)), bool(nxt & (1 << 10))
                    continue
                # the CDR is something else: push the flags back and read it as an item
                self.pos -= 4
                cdr = self.item()
                if cdr is not None:
                    cells.append(("__cdr__", cdr))
                break
            base = LISTSXP if t in (LISTSXP, ATTRLISTSXP) else t
            obj = RObject(base, cells)
            if first_attr is not None:
                obj.attributes = self.as_attributes(first_attr)
            return obj
        if t == CHARSXP:
            n = self.int()
            if n == -1:
                return None  # NA_character_
            raw = self.take(n)
            if levels & 64:  # ASCII; 8: UTF-8; 4: latin1; 2: bytes
                return raw.decode("ascii")
            if levels & 4:
                return raw.decode("latin-1")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        if t in (LGLSXP, INTSXP):
            n = self.length()
            vals = list(struct.unpack(f">{n}i", self.take(4 * n)))
            vals = [None if v == NA_INT else v for v in vals]
            obj = RObject(t, vals)
        elif t == REALSXP:
            n = self.length()
            obj = RObject(t, list(struct.unpack(f">{n}d", self.take(8 * n))))
        elif t == CPLXSXP:
            n = self.length()
            v = struct.unpack(f">{2 * n}d", self.take(16 * n))
            obj = RObject(t, [complex(v[2 * i], v[2 * i + 1]) for i in range(n)])
        elif t == RAWSXP:
            n = self.length()
            obj = RObject(t, self.take(n))
        elif t == STRSXP:
            n = self.length()
            obj = RObject(t, [self.item() for _ in range(n)])
        elif t in (VECSXP, EXPRSXP):
            n = self.length()
            obj = RObject(t, [self.item() for _ in range(n)])
        elif t == S4SXP:
            obj = RObject(t)
        elif t == ALTREP_SXP:
            info = self.item()
            state = self.item()
            attr = self.item()
            obj = self.expand_altrep(info, state)
            obj.attributes = self.as_attributes(attr)
            return obj
        else:
            raise ValueError(f"R stream: unsupported SEXP type {t}")
        if has_attr:
            obj.attributes = self.as_attributes(self.item())
        return obj

    def strings_body(self):
        self.int()  # always 0
        n = self.int()
        return [self.item() for _ in range(n)]

    @staticmethod
    def as_attributes(attr) -> dict:
        if attr is None:
            return {}
        if isinstance(attr, RObject) and attr.type == LISTSXP:
            return {k: v for k, v in attr.value if k != "__cdr__"}
        return {}

    @staticmethod
    def expand_altrep(info, state) -> RObject:
        cls = _symbol_name(info.value[0][1]) if isinstance(info, RObject) and info.value else None
        if cls == "compact_intseq":
            n, start, step = (int(x) for x in state.value)
            return RObject(INTSXP, [start + i * step for i in range(n)])
        if cls == "compact_realseq":
            n, start, step = state.value
            return RObject(REALSXP, [start + i * step for i in range(int(n))])
        if cls in ("deferred_string", "wrap_string", "wrap_integer", "wrap_real", "wrap_logical"):
            inner = state.value[0][1] if state.type == LISTSXP else state
            return RObject(inner.type, inner.value)
        raise ValueError(f"R stream: unsupported ALTREP class {cls}")


def _symbol_name(sym):
    if isinstance(sym, RObject) and sym.type == SYMSXP:
        return sym.value
    return sym


def unserialize(data: bytes):
    """Decode one serialized R object (the payload of an .rds file after decompression)."""
    r = _Reader(data)
    r.header()
    return r.item()


def _decompress_any(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:3] == b"BZh":
        return bz2.decompress(blob)
    if blob[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(blob)
    return blob


def read_rds(path: str):
    with open(path, "rb") as f:
        return unserialize(_decompress_any(f.read()))


def _lazyload_payload(blob: bytes) -> bytes:
    """One record of an .rdb file: 4-byte big-endian length, then zlib data (or a type byte
    'Z' xz / '2' bzip2 / '0' none followed by the stream, as R's lazy-load compression 2 and 3)."""
    n = struct.unpack(">I", blob[:4])[0]
    kind = blob[4:5]
    if kind == b"Z":
        out = lzma.decompress(blob[5:])
    elif kind == b"2":
        out = bz2.decompress(blob[5:])
    elif kind == b"0":
        out = blob[5:]
    else:
        out = zlib.decompress(blob[4:])
    if len(out) != n:
        raise ValueError(f"lazy-load record: expected {n} bytes, got {len(out)}")
    return out


def read_lazyload_db(base: str) -> dict:
    """Read every variable of an R lazy-load database `base.rdx` + `base.rdb` into a dict name -> RObject."""
    index = read_rds(base + ".rdx")
    names = index.attributes["names"].value
    parts = dict(zip(names, index.value))
    variables = parts["variables"]
    var_names = variables.attributes["names"].value
    with open(base + ".rdb", "rb") as f:
        rdb = f.read()
    out = {}
    for name, loc in zip(var_names, variables.value):
        offset, length = loc.value
        out[name] = unserialize(_lazyload_payload(rdb[offset:offset + length]))
    return out
