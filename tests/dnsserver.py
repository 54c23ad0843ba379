"""A real authoritative DNS server on loopback for tests of the CNAME check.

It answers UDP queries from a table the test edits (`set_cname`, `set_a`,
`clear`), NXDOMAIN for names it does not know, and runs in a thread.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class LoopbackDnsServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self.host, self.port = self._sock.getsockname()
        self._records: dict[tuple[dns.name.Name, int], list[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self.queries: list[tuple[str, str]] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> LoopbackDnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def set_cname(self, name: str, target: str) -> None:
        self._set(name, dns.rdatatype.CNAME, [target.rstrip(".") + "."])

    def set_a(self, name: str, *addresses: str) -> None:
        self._set(name, dns.rdatatype.A, list(addresses))

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def _set(self, name: str, rdtype: int, values: list[str]) -> None:
        with self._lock:
            self._records[(dns.name.from_text(name), rdtype)] = values

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        with self._lock:
            known = {n for n, _ in self._records}
            values = self._records.get((question.name, question.rdtype))
            if values is None and question.rdtype != dns.rdatatype.CNAME:
                # A name that is a CNAME answers other types with the CNAME.
                cname = self._records.get((question.name, dns.rdatatype.CNAME))
                if cname:
                    response.answer.append(
                        dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, dns.rdatatype.CNAME, cname)
                    )
                    return response
        if question.name not in known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, question.rdtype, values)
            )
        return response

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - a test server drops what it cannot read
                continue
            self._sock.sendto(self._answer(query).to_wire(), peer)
