"""A Parquet file that grows by row groups and is published atomically at every flush.

:class:`AppendedParquet` encodes only the rows added since the last flush (one row group,
zstd, page checksums), so writing a table costs O(rows) over a whole run instead of
rewriting every row at every checkpoint. The file readers see, ``<name>.parquet``, is always
complete: the row groups live in two hidden files (``.<name>.parquet.a`` / ``.b``) with the
same byte layout; a flush appends the new row groups and a footer listing all of them to
the hidden file that is *not* published, then hard-links it over ``<name>.parquet`` with a
rename (atomic). The published file is never written again while it is published, so a
killed run leaves the last published version intact, and bytes a reader has located are
never changed.

A table's newest rows can be published as a *tail* (``publish(tail=...)``): row groups
encoded for this publish only, written after the appended ones in the hidden file and listed
in its footer, but not part of the shared layout; the next publish writes its own tail in
their place. A caller keeps its rows in memory as the tail until there are enough for a row
group of a useful size, so a small table is neither rewritten whole at every flush (a cost
that grows with the run) nor split into a tiny row group per flush.

The footer is Parquet's Thrift (compact protocol) ``FileMetaData``. Each new row group is
encoded by pyarrow as a small file of its own; its footer's byte offsets are relative to
that small file, so they are shifted to where its bytes land (the fields named in
:data:`_OFFSET_FIELDS`) and its row groups are appended to the run's footer.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["AppendedParquet", "decode_struct", "encode_struct"]

_MAGIC = b"PAR1"
# Thrift compact protocol type ids
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

#: A decoded struct: its fields in order as (field id, compact type, value)
Struct = list[tuple[int, int, Any]]


# ---------------------------------------------------------------- Thrift compact codec
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = out = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _value(buf: bytes, pos: int, ttype: int) -> tuple[Any, int]:
    if ttype in (_BOOL_TRUE, _BOOL_FALSE):  # inside a collection: one byte
        return buf[pos] == _BOOL_TRUE, pos + 1
    if ttype == _BYTE:
        return buf[pos], pos + 1
    if ttype in (_I16, _I32, _I64):
        n, pos = _varint(buf, pos)
        return _unzigzag(n), pos
    if ttype == _DOUBLE:
        return buf[pos:pos + 8], pos + 8
    if ttype == _BINARY:
        n, pos = _varint(buf, pos)
        return bytes(buf[pos:pos + n]), pos + n
    if ttype in (_LIST, _SET):
        head = buf[pos]
        pos += 1
        size, etype = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        items = []
        for _ in range(size):
            v, pos = _value(buf, pos, etype)
            items.append(v)
        return (etype, items), pos
    if ttype == _MAP:
        size, pos = _varint(buf, pos)
        if not size:
            return (0, 0, []), pos
        kv = buf[pos]
        pos += 1
        pairs = []
        for _ in range(size):
            k, pos = _value(buf, pos, kv >> 4)
            v, pos = _value(buf, pos, kv & 0x0F)
            pairs.append((k, v))
        return (kv >> 4, kv & 0x0F, pairs), pos
    if ttype == _STRUCT:
        return _struct(buf, pos)
    raise ValueError(f"thrift: unknown compact type {ttype} at byte {pos}")


def _struct(buf: bytes, pos: int) -> tuple[Struct, int]:
    fields: Struct = []
    last = 0
    while True:
        head = buf[pos]
        pos += 1
        if head == 0:
            return fields, pos
        delta, ttype = head >> 4, head & 0x0F
        if delta:
            fid = last + delta
        else:
            n, pos = _varint(buf, pos)
            fid = _unzigzag(n)
        if ttype in (_BOOL_TRUE, _BOOL_FALSE):
            value: Any = ttype == _BOOL_TRUE
        else:
            value, pos = _value(buf, pos, ttype)
        fields.append((fid, ttype, value))
        last = fid


def decode_struct(buf: bytes) -> Struct:
    """Decode one compact-protocol struct (a Parquet footer) into nested field lists."""
    fields, _ = _struct(buf, 0)
    return fields


def _put_varint(out: bytearray, n: int) -> None:
    while True:
        if n < 0x80:
            out.append(n)
            return
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _put_value(out: bytearray, ttype: int, v: Any) -> None:
    if ttype in (_BOOL_TRUE, _BOOL_FALSE):
        out.append(_BOOL_TRUE if v else _BOOL_FALSE)
    elif ttype == _BYTE:
        out.append(v & 0xFF)
    elif ttype in (_I16, _I32, _I64):
        _put_varint(out, _zigzag(v))
    elif ttype == _DOUBLE:
        out += v
    elif ttype == _BINARY:
        _put_varint(out, len(v))
        out += v
    elif ttype in (_LIST, _SET):
        etype, items = v
        if len(items) < 15:
            out.append((len(items) << 4) | etype)
        else:
            out.append(0xF0 | etype)
            _put_varint(out, len(items))
        for item in items:
            if etype == _STRUCT and isinstance(item, bytes):  # encoded already
                out += item
            else:
                _put_value(out, etype, item)
    elif ttype == _MAP:
        kt, vt, pairs = v
        _put_varint(out, len(pairs))
        if pairs:
            out.append((kt << 4) | vt)
            for k, val in pairs:
                _put_value(out, kt, k)
                _put_value(out, vt, val)
    elif ttype == _STRUCT:
        _put_struct(out, v)
    else:
        raise ValueError(f"thrift: unknown compact type {ttype}")


def _put_struct(out: bytearray, fields: Struct) -> None:
    last = 0
    for fid, ttype, v in fields:
        wire = (_BOOL_TRUE if v else _BOOL_FALSE) if ttype in (_BOOL_TRUE, _BOOL_FALSE) else ttype
        if 0 < fid - last <= 15:
            out.append(((fid - last) << 4) | wire)
        else:
            out.append(wire)
            _put_varint(out, _zigzag(fid))
        if ttype not in (_BOOL_TRUE, _BOOL_FALSE):
            _put_value(out, ttype, v)
        last = fid
    out.append(0)


def encode_struct(fields: Struct) -> bytes:
    """Encode nested field lists (as :func:`decode_struct` returns them) in compact protocol."""
    out = bytearray()
    _put_struct(out, fields)
    return bytes(out)


# ---------------------------------------------------------------- footer surgery
# FileMetaData: 3 num_rows, 4 row_groups; RowGroup: 1 columns, 3 num_rows, 5 file_offset,
# 7 ordinal; ColumnChunk: 2 file_offset, 3 meta_data, 4 offset_index_offset,
# 6 column_index_offset; ColumnMetaData: 9 data_page_offset, 10 index_page_offset,
# 11 dictionary_page_offset, 14 bloom_filter_offset
_FMD_NUM_ROWS, _FMD_ROW_GROUPS = 3, 4
_RG_COLUMNS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 5, 7
_CC_OFFSETS, _CC_META = (2, 4, 6), 3
_CMD_OFFSETS = (9, 10, 11, 14)
#: every byte offset a Parquet footer holds, by struct
_OFFSET_FIELDS = {"RowGroup": (_RG_FILE_OFFSET,), "ColumnChunk": _CC_OFFSETS,
                  "ColumnMetaData": _CMD_OFFSETS}


def _shift(fields: Struct, ids: tuple[int, ...], delta: int) -> Struct:
    return [(f, t, v + delta if f in ids and t in (_I32, _I64) else v) for f, t, v in fields]


def _shift_row_group(rg: Struct, delta: int, ordinal: int) -> Struct:
    out: Struct = []
    for fid, ttype, v in _shift(rg, (_RG_FILE_OFFSET,), delta):
        if fid == _RG_COLUMNS:
            etype, chunks = v
            shifted = []
            for cc in chunks:
                cc = _shift(cc, _CC_OFFSETS, delta)
                shifted.append([(f, t, _shift(m, _CMD_OFFSETS, delta) if f == _CC_META else m)
                                for f, t, m in cc])
            v = (etype, shifted)
        elif fid == _RG_ORDINAL:
            if ordinal > 0x7FFF:  # an i16: past it the (optional) ordinal is left out
                continue
            v = ordinal
        out.append((fid, ttype, v))
    return out


def _split(encoded: bytes) -> tuple[bytes, Struct]:
    """A whole small Parquet file -> (its row-group bytes after the magic, its footer)."""
    if encoded[:4] != _MAGIC or encoded[-4:] != _MAGIC:
        raise ValueError("not a Parquet file")
    (flen,) = struct.unpack("<I", encoded[-8:-4])
    start = len(encoded) - 8 - flen
    return encoded[4:start], decode_struct(encoded[start:len(encoded) - 8])


# ---------------------------------------------------------------- the appended file
class AppendedParquet:
    """``path`` written as a Parquet file that grows by one row group per :meth:`append`.

    :meth:`append` encodes rows (they leave the caller's memory); :meth:`publish` makes
    everything appended so far visible at ``path`` atomically. :meth:`close` publishes and
    removes the hidden files. Errors while publishing (a full disk) leave ``path`` as it
    was and keep the appended rows for the next :meth:`publish`.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.hidden = [self.path.with_name(f".{self.path.name}.{s}") for s in "ab"]
        for h in self.hidden:  # a stopped run's hidden files: new inodes, the published stays
            h.unlink(missing_ok=True)
        self.length = len(_MAGIC)  # bytes of the shared layout: magic + row groups
        # each row group's footer entry, encoded once: a compact-protocol struct is encoded on
        # its own (field ids relative within it), so the footer is these bytes concatenated;
        # re-encoding every row group at every publish cost O(row groups) each time
        self.row_groups: list[bytes] = []
        self.num_rows = 0
        self._template: Struct | None = None
        self._segments: list[tuple[int, bytes]] = []  # row-group bytes not yet in both files
        self._synced = [0, 0]  # layout bytes each hidden file holds (0: not created)
        self._published: int | None = None
        self._tail_rows = 0  # rows of the tail the published file holds
        self.dirty = False

    def _encode(self, table: pa.Table) -> tuple[bytes, list[bytes], Struct]:
        """``table`` as one row group placed at the end of the layout: (its bytes, its
        footer entries with offsets shifted there, the small file's footer)."""
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", write_page_checksum=True,
                       row_group_size=max(table.num_rows, 1))
        data, footer = _split(buf.getvalue())
        delta = self.length - len(_MAGIC)
        groups = [encode_struct(_shift_row_group(rg, delta, len(self.row_groups) + i))
                  for fid, _t, v in footer if fid == _FMD_ROW_GROUPS for i, rg in enumerate(v[1])]
        return data, groups, footer

    def append(self, table: pa.Table) -> None:
        """Encode ``table`` (this schema) as new row groups (visible at the next publish)."""
        if not table.num_rows:
            return
        data, groups, footer = self._encode(table)
        self.row_groups += groups
        if self._template is None:
            self._template = footer
        self._segments.append((self.length, data))
        self.length += len(data)
        self.num_rows += table.num_rows
        self.dirty = True

    def footer(self, tail_groups: list[bytes] | None = None, tail_rows: int = 0) -> bytes:
        assert self._template is not None
        fields: Struct = []
        for fid, ttype, v in self._template:
            if fid == _FMD_NUM_ROWS:
                v = self.num_rows + tail_rows
            elif fid == _FMD_ROW_GROUPS:
                v = (v[0], self.row_groups + (tail_groups or []))
            fields.append((fid, ttype, v))
        meta = encode_struct(fields)
        return meta + struct.pack("<I", len(meta)) + _MAGIC

    def publish(self, tail: pa.Table | None = None) -> None:
        """Write the row groups appended so far and a footer to the hidden file that is not
        published, then put it at ``path`` (hard link + rename; a copy where links fail).

        ``tail``: rows published after the appended ones this time only (see the module
        docstring); the file at ``path`` then has ``num_rows + tail.num_rows`` rows."""
        tail_groups: list[bytes] = []
        tail_data, tail_rows = b"", 0
        if tail is not None and tail.num_rows:
            tail_data, tail_groups, footer = self._encode(tail)
            tail_rows = tail.num_rows
            if self._template is None:
                self._template = footer
        elif not self.dirty and self._tail_rows == 0:
            return
        if self._template is None:
            return
        i = 0 if self._published != 0 else 1
        target = self.hidden[i]
        with open(target, "r+b" if self._synced[i] else "wb") as f:
            if not self._synced[i]:
                f.write(_MAGIC)
                self._synced[i] = len(_MAGIC)
            f.truncate(self._synced[i])  # drop its old footer: it is not the published file
            f.seek(self._synced[i])
            for offset, data in self._segments:
                if offset >= self._synced[i]:
                    if offset != f.tell():
                        raise RuntimeError(f"{self.path}: appended layout out of order")
                    f.write(data)
            f.write(tail_data)
            f.write(self.footer(tail_groups, tail_rows))
        self._synced[i] = self.length
        tmp = self.path.with_name(f".{self.path.name}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.link(target, tmp)
        except OSError:  # no hard links on this file system: a copy, still renamed into place
            shutil.copyfile(target, tmp)
        os.replace(tmp, self.path)
        self._published = i
        self.dirty = False
        self._tail_rows = tail_rows
        low = min(self._synced)
        self._segments = [(o, d) for o, d in self._segments if o + len(d) > low]

    def abandon(self) -> None:
        """Forget the hidden files (the published one stays at ``path``)."""
        for h in self.hidden:
            h.unlink(missing_ok=True)
        self._segments = []

    def close(self) -> None:
        self.publish()
        self.abandon()
