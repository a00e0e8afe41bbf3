#!/usr/bin/env python3
"""Writes small layer tars into seeds/layer_unpack/: ordinary entries, whiteouts, PAX and GNU long
names, and the hostile shapes the unpacker must refuse (`..`, absolute names, escaping symlinks
and hard links, a symlink used as a parent). Deterministic: mtime 0, fixed owners."""
import gzip, io, os, sys, tarfile

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layer_unpack")
os.makedirs(out, exist_ok=True)

def entry(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime, ti.size = kind, link, mode, 0, len(data)
    return ti, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)

def write(name, entries, fmt=tarfile.GNU_FORMAT, gz=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, f in entries:
            t.addfile(ti, f)
    data = buf.getvalue()
    if gz:
        data = gzip.compress(data, mtime=0)
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

D = tarfile.DIRTYPE
write("plain.tar", [entry("etc/", D, mode=0o755), entry("etc/hostname", data=b"box\n"),
                    entry("bin/", D), entry("bin/sh", data=b"#!", mode=0o4755),
                    entry("bin/ash", tarfile.SYMTYPE, link="sh"), entry("bin/ln", tarfile.LNKTYPE, link="bin/sh")])
write("whiteout.tar", [entry("etc/", D), entry("etc/.wh.passwd"), entry("var/", D), entry("var/.wh..wh..opq")])
write("pax-long.tar", [entry("d/" + "x" * 200, data=b"long")], fmt=tarfile.PAX_FORMAT)
write("gnu-long.tar", [entry("d/" + "y" * 200, data=b"long"), entry("l", tarfile.SYMTYPE, link="z" * 150)])
write("dotdot.tar", [entry("../outside/evil", data=b"x")])
write("absolute.tar", [entry("/tmp/evil", data=b"x")])
write("symlink-parent.tar", [entry("esc", tarfile.SYMTYPE, link="../outside"), entry("esc/evil", data=b"x")])
write("symlink-abs.tar", [entry("esc", tarfile.SYMTYPE, link="/"), entry("esc/tmp/evil", data=b"x")])
write("hardlink-out.tar", [entry("h", tarfile.LNKTYPE, link="../outside/sentinel")])
write("hardlink-dir.tar", [entry("d/", D), entry("h", tarfile.LNKTYPE, link="d")])
write("overwrite-symlink.tar", [entry("f", tarfile.SYMTYPE, link="../outside/sentinel"), entry("f", data=b"x")])
write("device.tar", [entry("dev/", D), entry("dev/null", tarfile.CHRTYPE)])
write("plain.tar.gz", [entry("a", data=b"gz"), entry("b/", D)], gz=True)
print(f"wrote {len(os.listdir(out))} seeds to {out}")
