"""The names behind the addresses a target connects to, from the DNS answers it received.

While a detect run holds the lease (``SW_DETECT_LEASE``, bpf/watcher.h), the tracer copies the
first ``SW_DNS_MAX`` bytes of what a traced process receives from port 53 (``read``,
``recvfrom``, ``recvmsg`` on an inet socket) into the ring ``dns_answers``. This module reads
the ring, parses each message with dnspython and keeps, per session, address → (name, when):
an endpoint the target connected to after an answer named its address is shown with the name.
Nothing here asks a resolver: every name is one the target itself was told.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.libbpf import MapFd, lib

HEADER = 12  # a DNS message's fixed header


@dataclass(frozen=True)
class Answer:
    """One DNS answer the kernel copied: when, who received it, and its bytes."""

    ts_ns: int
    tgid: int
    sid: int
    length: int   # bytes received
    data: bytes   # the first SW_DNS_MAX of them


def parse(data: bytes) -> tuple[str, list[str]] | None:
    """(the name asked for, the addresses answered) of a DNS response, or None when ``data`` is
    not one with addresses. A message read from TCP may start with its 2-byte length."""
    for msg_bytes in (data, data[2:]):
        if len(msg_bytes) < HEADER:
            return None
        try:
            msg = dns.message.from_wire(msg_bytes, ignore_trailing=True)
        except (dns.exception.DNSException, ValueError):
            if msg_bytes is data and int.from_bytes(data[:2], "big") == len(data) - 2:
                continue  # TCP: the length prefix first
            return None
        break
    else:
        return None
    if not msg.flags & dns.flags.QR or msg.rcode() != dns.rcode.NOERROR or not msg.question:
        return None
    asked = msg.question[0].name.to_text(omit_final_dot=True)
    addrs = [rd.address for rrset in msg.answer
             if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rd in rrset]
    return (asked, addrs) if addrs else None


@dataclass
class NameBook:
    """address → [(when, session, name)] from the answers read so far (kept across --watch
    windows), and what could not be read."""

    seen: dict[bytes, list[tuple[int, int, str]]] = field(default_factory=dict)
    answers: int = 0      # DNS messages read from the ring
    lost: int = 0         # answers overwritten in the ring before they were read
    unparsed: int = 0     # messages from port 53 that were not a response with addresses

    def add(self, answer: Answer) -> None:
        self.answers += 1
        got = parse(answer.data)
        if got is None:
            self.unparsed += 1
            return
        name, addrs = got
        for addr in addrs:
            packed = ipaddress.ip_address(addr).packed
            self.seen.setdefault(packed, []).append((answer.ts_ns, answer.sid, name))

    def name_of(self, addr: bytes, before_ns: int, sids: set[int] | None = None) -> str | None:
        """The name of the latest answer (of one of ``sids``, or any) that gave ``addr`` no
        later than ``before_ns``: the connect followed the answer."""
        best: tuple[int, str] | None = None
        for ts, sid, name in self.seen.get(addr, ()):
            if ts <= before_ns and (sids is None or sid in sids) and (best is None or
                                                                       ts >= best[0]):
                best = (ts, name)
        return best[1] if best else None


class DnsRing:
    """Reads the answers the kernel added to ``dns_answers`` since the last read."""

    def __init__(self, detect: MapFd, ring: MapFd) -> None:
        self.detect, self.ring = detect, ring
        self.next_seq = self._count()  # answers before this run are not ours

    def _count(self) -> int:
        key = libbpf.new("uint32_t *", lib.SW_DETECT_DNS_NEXT)
        val = libbpf.new("uint64_t *")
        return int(val[0]) if self.detect.lookup(key, val) else 0

    def read(self, book: NameBook) -> None:
        count = self._count()
        slots = lib.SW_DNS_SLOTS
        if count - self.next_seq > slots:
            book.lost += count - self.next_seq - slots
            self.next_seq = count - slots
        key = libbpf.new("uint32_t *")
        val = libbpf.new("struct sw_dns_answer *")
        while self.next_seq < count:
            seq = self.next_seq
            key[0] = seq % slots
            if not self.ring.lookup(key, val):
                break
            if val.seq_end != seq + 1 or val.seq_begin != seq + 1:
                if val.seq_begin <= seq + 1 and val.seq_end <= seq:
                    break  # still being written: read it next time
                book.lost += 1  # overwritten by a newer answer before we got to it
            else:
                book.add(Answer(int(val.ts_ns), int(val.tgid), int(val.sid), int(val.len),
                                bytes(libbpf.to_bytes(val.data))[:val.copied]))
            self.next_seq += 1
