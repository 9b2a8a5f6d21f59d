"""Reading and rewriting records of a nats-server message block (``N.blk``), checksums included,
so a test can edit a stored event the way someone with the server's disk could."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

M64 = (1 << 64) - 1
HDR = struct.Struct("<IQQH")  # record length (top bit: has headers), seq, timestamp, subject length
HAS_HEADERS = 1 << 31


def _zipper(v1: int, v0: int) -> tuple[int, int]:
    add0 = (
        (((v0 & 0xFF000000) | (v1 & 0xFF00000000)) >> 24)
        | (((v0 & 0xFF0000000000) | (v1 & 0xFF000000000000)) >> 16)
        | (v0 & 0xFF0000)
        | ((v0 & 0xFF00) << 32)
        | ((v1 & 0xFF00000000000000) >> 8)
        | ((v0 << 56) & M64)
    )
    add1 = (
        (((v1 & 0xFF000000) | (v0 & 0xFF00000000)) >> 24)
        | (v1 & 0xFF0000)
        | ((v1 & 0xFF0000000000) >> 16)
        | ((v1 & 0xFF00) << 24)
        | ((v0 & 0xFF000000000000) >> 8)
        | ((v1 & 0xFF) << 48)
        | (v0 & 0xFF00000000000000)
    )
    return add1 & M64, add0 & M64


class HighwayHash64:
    """HighwayHash-64, the record checksum nats-server's file store uses (port of Google's C code)."""

    def __init__(self, key: bytes) -> None:
        k = struct.unpack("<4Q", key)
        self.mul0 = [0xDBE6D5D5FE4CCE2F, 0xA4093822299F31D0, 0x13198A2E03707344, 0x243F6A8885A308D3]
        self.mul1 = [0x3BD39E10CB0EF593, 0xC0ACF169B5F18A8C, 0xBE5466CF34E90C6C, 0x452821E638D01377]
        self.v0 = [self.mul0[i] ^ k[i] for i in range(4)]
        self.v1 = [self.mul1[i] ^ (((k[i] >> 32) | (k[i] << 32)) & M64) for i in range(4)]

    def _update(self, lanes: list[int]) -> None:
        v0, v1, mul0, mul1 = self.v0, self.v1, self.mul0, self.mul1
        for i in range(4):
            v1[i] = (v1[i] + mul0[i] + lanes[i]) & M64
            mul0[i] ^= ((v1[i] & 0xFFFFFFFF) * (v0[i] >> 32)) & M64
            v0[i] = (v0[i] + mul1[i]) & M64
            mul1[i] ^= ((v0[i] & 0xFFFFFFFF) * (v1[i] >> 32)) & M64
        for a, b, dst in ((1, 0, v0), (3, 2, v0)):
            add1, add0 = _zipper(v1[a], v1[b])
            dst[a], dst[b] = (dst[a] + add1) & M64, (dst[b] + add0) & M64
        for a, b, dst in ((1, 0, v1), (3, 2, v1)):
            add1, add0 = _zipper(v0[a], v0[b])
            dst[a], dst[b] = (dst[a] + add1) & M64, (dst[b] + add0) & M64

    def digest(self, data: bytes) -> int:
        full = len(data) - len(data) % 32
        for off in range(0, full, 32):
            self._update(list(struct.unpack_from("<4Q", data, off)))
        rest = data[full:]
        if rest:
            self._remainder(rest)
        for _ in range(4):
            v = self.v0
            self._update([((x >> 32) | (x << 32)) & M64 for x in (v[2], v[3], v[0], v[1])])
        return (self.v0[0] + self.v1[0] + self.mul0[0] + self.mul1[0]) & M64

    def _remainder(self, rest: bytes) -> None:
        size = len(rest)
        mod4 = size & 3
        whole = size & ~3
        for i in range(4):
            self.v0[i] = (self.v0[i] + (size << 32) + size) & M64
        for i in range(4):
            lo, hi = self.v1[i] & 0xFFFFFFFF, self.v1[i] >> 32
            lo = ((lo << size) | (lo >> (32 - size))) & 0xFFFFFFFF
            hi = ((hi << size) | (hi >> (32 - size))) & 0xFFFFFFFF
            self.v1[i] = lo | (hi << 32)
        packet = bytearray(32)
        packet[:whole] = rest[:whole]
        tail = rest[whole:]
        if size & 16:
            packet[28:32] = rest[whole + mod4 - 4 : whole + mod4]
        elif mod4:
            packet[16], packet[17], packet[18] = tail[0], tail[mod4 >> 1], tail[mod4 - 1]
        self._update(list(struct.unpack("<4Q", bytes(packet))))


@dataclass
class Record:
    offset: int
    length: int
    seq: int
    ts: int
    subject: bytes
    headers: bytes | None
    payload: bytes
    checksum: bytes


def records(block: bytes) -> list[Record]:
    out, off = [], 0
    while off + HDR.size <= len(block):
        rl, seq, ts, slen = HDR.unpack_from(block, off)
        length = rl & ~HAS_HEADERS
        if length == 0:
            break
        pos = off + HDR.size
        subject = block[pos : pos + slen]
        pos += slen
        headers = None
        if rl & HAS_HEADERS:
            (hlen,) = struct.unpack_from("<I", block, pos)
            headers = block[pos + 4 : pos + 4 + hlen]
            pos += 4 + hlen
        end = off + length
        out.append(Record(off, length, seq, ts, subject, headers, block[pos : end - 8], block[end - 8 : end]))
        off = end
    return out


def checksum(stream: str, index: int, rec: Record, payload: bytes) -> bytes:
    """The record checksum: HighwayHash-64 keyed by sha256("STREAM-INDEX") over seq, ts, subject,
    headers and payload (see nats-server's filestore.go)."""
    key = hashlib.sha256(f"{stream}-{index}".encode()).digest()
    data = struct.pack("<QQ", rec.seq, rec.ts) + rec.subject + (rec.headers or b"") + payload
    return struct.pack("<Q", HighwayHash64(key).digest(data))


def replace_payload(block: bytes, stream: str, index: int, seq: int, payload: bytes) -> bytes:
    """``block`` with record ``seq``'s payload replaced (same length) and its checksum made valid."""
    (rec,) = [r for r in records(block) if r.seq == seq]
    assert len(payload) == len(rec.payload), "the same length keeps every offset in the index valid"
    start = rec.offset + rec.length - 8 - len(rec.payload)
    fixed = payload + checksum(stream, index, rec, payload)
    return block[:start] + fixed + block[rec.offset + rec.length :]
